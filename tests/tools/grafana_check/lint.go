package main

// The lint: Grafana's dashboard linter's rules (github.com/grafana/dashboard-linter, its
// rules.go; and the uneditable-dashboard rule of Grafana's gcx CLI), written again here
// against the SDK's typed model. Where this check is stricter than the linter it says so.

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/prometheus/prometheus/promql/parser"
)

// validUnits is Grafana's unit list as the SDK's units package holds it, set at build time
// by scripts/testbin-grafana (-ldflags -X), so the list follows the pinned SDK.
var validUnits = ""

// Magic durations standing in for Grafana's interval variables, so that the parsed query
// still shows which range came from which variable (the linter's own trick).
const (
	rateIntervalMagic = 8869990787 * time.Millisecond
	intervalMagic     = 7767890123 * time.Millisecond
	rangeMagic        = 6667890456 * time.Millisecond
)

var globals = map[string]string{
	"__rate_interval": fmt.Sprintf("%dms", rateIntervalMagic.Milliseconds()),
	"__interval":      fmt.Sprintf("%dms", intervalMagic.Milliseconds()),
	"__range":         fmt.Sprintf("%dms", rangeMagic.Milliseconds()),
}

var variableRef = regexp.MustCompile(`\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]`)
var labelValues = regexp.MustCompile(`^label_values\((.+),\s*(\w+)\)$`)

type panelRule struct {
	name string
	fn   func(dashboard.Dashboard, dashboard.Panel) []string
}

type targetRule struct {
	name string
	fn   func(parser.Expr) []string
}

var panelRules = []panelRule{
	{"panel-datasource-rule", panelDatasource},
	{"panel-title-description-rule", panelTitleDescription},
	{"panel-units-rule", panelUnits},
	{"panel-no-targets-rule", panelNoTargets},
}

var targetRules = []targetRule{
	{"target-rate-interval-rule", rateInterval},
	{"target-counter-agg-rule", counterAggregated},
}

func ruleNames() []string {
	names := []string{"template-datasource-rule", "template-label-promql-rule",
		"template-on-time-change-reload-rule", "target-promql-rule", "uneditable-dashboard"}
	for _, r := range panelRules {
		names = append(names, r.name)
	}
	for _, r := range targetRules {
		names = append(names, r.name)
	}
	sort.Strings(names)
	return names
}

// excludedRules are the linter's rules for the monitoring mixins' job/instance convention:
// a study is selected by namespace and study, labels every scalingstudy series carries.
func excludedRules() map[string]any {
	why := "the dashboard selects a study by $namespace and $study; job/instance variables are the mixins' convention"
	return map[string]any{
		"template-job-rule": why, "template-instance-rule": why,
		"target-job-rule": why, "target-instance-rule": why,
	}
}

func lint(d dashboard.Dashboard) []Finding {
	found := templateRules(d)
	if d.Editable == nil || *d.Editable {
		found = append(found, Finding{"uneditable-dashboard", "dashboard",
			"editable is not false: the chart's JSON is the source of truth"})
	}
	for _, p := range panels(d) {
		where := fmt.Sprintf("panel %q", deref(p.Title))
		for _, r := range panelRules {
			for _, msg := range r.fn(d, p) {
				found = append(found, Finding{r.name, where, msg})
			}
		}
		for _, t := range promTargets(p) {
			found = append(found, lintTarget(d, where+" target "+deref(t.RefId), t.Expr)...)
		}
	}
	return found
}

func lintTarget(d dashboard.Dashboard, where, expr string) []Finding {
	parsed, err := parsePromQL(d, expr)
	if err != nil {
		return []Finding{{"target-promql-rule", where, err.Error()}}
	}
	var found []Finding
	for _, r := range targetRules {
		for _, msg := range r.fn(parsed) {
			found = append(found, Finding{r.name, where, msg})
		}
	}
	return found
}

// parsePromQL substitutes Grafana's variables (the dashboard's own and the globals) and
// parses the result; a variable the dashboard does not define is an error.
func parsePromQL(d dashboard.Dashboard, expr string) (parser.Expr, error) {
	defined := map[string]bool{}
	for _, v := range d.Templating.List {
		defined[v.Name] = true
	}
	var unknown []string
	substituted := variableRef.ReplaceAllStringFunc(expr, func(ref string) string {
		m := variableRef.FindStringSubmatch(ref)
		name := m[1] + m[2] + m[3]
		if value, ok := globals[name]; ok {
			return value
		}
		if !defined[name] {
			unknown = append(unknown, ref)
		}
		return "value_of_" + name
	})
	if len(unknown) > 0 {
		return nil, fmt.Errorf("%q: undefined variables %v", expr, unknown)
	}
	parsed, err := parser.NewParser(parser.Options{}).ParseExpr(substituted)
	if err != nil {
		return nil, fmt.Errorf("%q: %v", expr, err)
	}
	return parsed, nil
}

func templateRules(d dashboard.Dashboard) []Finding {
	var found []Finding
	hasDatasource := false
	for _, v := range d.Templating.List {
		where := fmt.Sprintf("variable %q", v.Name)
		query := ""
		if v.Query != nil && v.Query.String != nil {
			query = *v.Query.String
		} else if v.Query != nil && v.Query.Map != nil {
			query, _ = v.Query.Map["query"].(string)
		}
		switch v.Type {
		case dashboard.VariableTypeDatasource:
			hasDatasource = hasDatasource || (v.Name == "datasource" && query == "prometheus")
		case dashboard.VariableTypeQuery:
			found = append(found, queryVariable(d, where, v, query)...)
		}
	}
	if !hasDatasource {
		found = append(found, Finding{"template-datasource-rule", "templating",
			"no datasource variable named datasource of type prometheus"})
	}
	return found
}

func queryVariable(d dashboard.Dashboard, where string, v dashboard.VariableModel, query string) []Finding {
	var found []Finding
	if v.Refresh == nil || *v.Refresh != dashboard.VariableRefreshOnTimeRangeChanged {
		found = append(found, Finding{"template-on-time-change-reload-rule", where,
			"refresh is not 2 (on time range change)"})
	}
	m := labelValues.FindStringSubmatch(strings.TrimSpace(query))
	if m == nil {
		return append(found, Finding{"template-label-promql-rule", where,
			fmt.Sprintf("%q is not label_values(selector, label)", query)})
	}
	if _, err := parsePromQL(d, m[1]); err != nil {
		found = append(found, Finding{"template-label-promql-rule", where, err.Error()})
	}
	if v.Definition != nil && *v.Definition != query {
		found = append(found, Finding{"template-label-promql-rule", where,
			"definition differs from the query Grafana runs"})
	}
	return found
}

// promTargets are the panel's Prometheus queries as the SDK decoded them.
func promTargets(p dashboard.Panel) []*prometheus.Dataquery {
	var out []*prometheus.Dataquery
	for _, t := range p.Targets {
		if q, ok := t.(*prometheus.Dataquery); ok {
			out = append(out, q)
		}
	}
	return out
}

func panelDatasource(_ dashboard.Dashboard, p dashboard.Panel) []string {
	if p.Datasource == nil || p.Datasource.Uid == nil {
		return []string{"no datasource: it must be the templated ${datasource}"}
	}
	uid := *p.Datasource.Uid
	if uid != "$datasource" && uid != "${datasource}" {
		return []string{fmt.Sprintf("datasource %q is not the templated ${datasource}", uid)}
	}
	return nil
}

func panelTitleDescription(_ dashboard.Dashboard, p dashboard.Panel) []string {
	var missing []string
	if strings.TrimSpace(deref(p.Title)) == "" {
		missing = append(missing, "no title")
	}
	if strings.TrimSpace(deref(p.Description)) == "" {
		missing = append(missing, "no description")
	}
	return missing
}

// panelUnits is stricter than the linter: every panel type with data needs a unit (the
// linter checks stat, table, timeseries and gauge only), an override's unit must be valid
// too, and the linter's exceptions (value mappings; a stat of non-numeric fields) hold.
func panelUnits(_ dashboard.Dashboard, p dashboard.Panel) []string {
	if p.Type == "text" || p.Type == "row" {
		return nil
	}
	valid := map[string]bool{}
	for _, u := range strings.Split(validUnits, ",") {
		valid[u] = true
	}
	if len(valid) < 100 {
		return []string{"grafana-check was built without Grafana's unit list"}
	}
	var problems []string
	if p.FieldConfig != nil {
		for _, o := range p.FieldConfig.Overrides {
			for _, prop := range o.Properties {
				if u, ok := prop.Value.(string); prop.Id == "unit" && (!ok || !valid[u]) {
					problems = append(problems, fmt.Sprintf("override unit %v is not a Grafana unit", prop.Value))
				}
			}
		}
		if len(p.FieldConfig.Defaults.Mappings) > 0 {
			return problems
		}
	}
	unit := unitOf(p)
	if unit == "" {
		return append(problems, "no unit")
	}
	if !valid[unit] {
		return append(problems, fmt.Sprintf("unit %q is not a Grafana unit", unit))
	}
	return problems
}

func unitOf(p dashboard.Panel) string {
	if p.FieldConfig == nil || p.FieldConfig.Defaults.Unit == nil {
		return ""
	}
	return *p.FieldConfig.Defaults.Unit
}

func panelNoTargets(_ dashboard.Dashboard, p dashboard.Panel) []string {
	if p.Type == "text" || p.Type == "row" || len(p.Targets) > 0 {
		return nil
	}
	return []string{"no targets"}
}
