package main

import (
	"fmt"
	"strings"

	"github.com/prometheus/prometheus/promql/parser"
)

type inspector func(parser.Node, []parser.Node) error

func (f inspector) Visit(node parser.Node, path []parser.Node) (parser.Visitor, error) {
	if err := f(node, path); err != nil {
		return nil, err
	}
	return f, nil
}

// walk collects one message per offending node instead of stopping at the first.
func walk(expr parser.Expr, check func(parser.Node, []parser.Node) string) []string {
	var found []string
	_ = parser.Walk(inspector(func(node parser.Node, path []parser.Node) error {
		if msg := check(node, path); msg != "" {
			found = append(found, msg)
		}
		return nil
	}), expr, nil)
	return found
}

func parentCall(path []parser.Node) *parser.Call {
	if len(path) == 0 {
		return nil
	}
	call, _ := path[len(path)-1].(*parser.Call)
	return call
}

// rateInterval: rate and irate over $__rate_interval (the linter's rule); stricter, an
// increase (and delta and deriv, a gauge's increase and rate) over $__rate_interval or the
// dashboard's $__range, never a fixed window that ignores the scrape interval and the
// dashboard's step.
func rateInterval(expr parser.Expr) []string {
	return walk(expr, func(node parser.Node, path []parser.Node) string {
		sel, ok := node.(*parser.MatrixSelector)
		if !ok {
			return ""
		}
		call := parentCall(path)
		if call == nil {
			return ""
		}
		switch call.Func.Name {
		case "rate", "irate":
			if sel.Range != rateIntervalMagic {
				return fmt.Sprintf("%s() over %s: use $__rate_interval", call.Func.Name, sel.Range)
			}
		case "increase", "delta", "deriv":
			if sel.Range != rateIntervalMagic && sel.Range != rangeMagic {
				return fmt.Sprintf("%s() over %s: use $__rate_interval or $__range",
					call.Func.Name, sel.Range)
			}
		default:
			if sel.Range == rateIntervalMagic {
				return fmt.Sprintf("$__rate_interval in %s(), not a rate", call.Func.Name)
			}
		}
		return ""
	})
}

// counterAggregated: a counter (a _total series) only inside rate, irate or increase.
// Stricter than the linter, which compares the whole selector text and so misses a
// counter written with label matchers.
func counterAggregated(expr parser.Expr) []string {
	return walk(expr, func(node parser.Node, path []parser.Node) string {
		sel, ok := node.(*parser.VectorSelector)
		if !ok || !strings.HasSuffix(sel.Name, "_total") {
			return ""
		}
		if len(path) >= 2 {
			_, ranged := path[len(path)-1].(*parser.MatrixSelector)
			call, _ := path[len(path)-2].(*parser.Call)
			if ranged && call != nil {
				switch call.Func.Name {
				case "rate", "irate", "increase":
					return ""
				}
			}
		}
		return fmt.Sprintf("counter %s is not inside rate, irate or increase", sel.Name)
	})
}
