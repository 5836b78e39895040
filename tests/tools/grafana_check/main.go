// Command grafana-check decodes a Grafana dashboard strictly with the Grafana Foundation
// SDK (unknown or mistyped fields refused, each panel type's options and field config and
// each Prometheus query decoded by its plugin's schema), validates it, and lints it against
// the rules of Grafana's dashboard linter (github.com/grafana/dashboard-linter).
//
// Grafana itself is AGPL and not used; the SDK and the PromQL parser are Apache-licensed.
// The report is JSON on stdout so the Python tests assert on it; the exit status is 0 when
// the dashboard was read (findings or none), 2 when it could not be read at all.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
)

// Finding is one problem: the rule that found it, where, and what.
type Finding struct {
	Rule    string `json:"rule"`
	Where   string `json:"where"`
	Message string `json:"message"`
}

// Target is one query as decoded, for the tests to evaluate.
type Target struct {
	RefID string `json:"refId"`
	Expr  string `json:"expr"`
}

// PanelReport is what the SDK decoded of one panel.
type PanelReport struct {
	ID      uint32   `json:"id"`
	Type    string   `json:"type"`
	Title   string   `json:"title"`
	Unit    string   `json:"unit"`
	Targets []Target `json:"targets"`
}

// Report is the whole answer.
type Report struct {
	Findings []Finding      `json:"findings"`
	Panels   []PanelReport  `json:"panels"`
	Rules    []string       `json:"rules"`
	Excluded map[string]any `json:"excluded"`
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: grafana-check DASHBOARD.json")
		os.Exit(2)
	}
	raw, err := os.ReadFile(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	report := check(raw)
	out := json.NewEncoder(os.Stdout)
	out.SetIndent("", "  ")
	if err := out.Encode(report); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
}

// check decodes strictly, validates, and lints what decoded.
func check(raw []byte) Report {
	plugins.RegisterDefaultPlugins()
	report := Report{Findings: []Finding{}, Panels: []PanelReport{}, Rules: ruleNames(),
		Excluded: excludedRules()}
	var d dashboard.Dashboard
	if err := d.UnmarshalJSONStrict(raw); err != nil {
		report.Findings = append(report.Findings, buildErrors("strict-decode", err)...)
		// Lint what a lenient decode makes of it, so one run reports every finding.
		d = dashboard.Dashboard{}
		if err := json.Unmarshal(raw, &d); err != nil {
			report.Findings = append(report.Findings, buildErrors("decode", err)...)
		}
	}
	if err := d.Validate(); err != nil {
		report.Findings = append(report.Findings, buildErrors("validate", err)...)
	}
	report.Findings = append(report.Findings, strictFieldConfigs(raw)...)
	for _, p := range panels(d) {
		report.Panels = append(report.Panels, describe(p))
	}
	report.Findings = append(report.Findings, lint(d)...)
	return report
}

// buildErrors splits the SDK's joined errors into one finding each, with their paths.
func buildErrors(rule string, err error) []Finding {
	var many cog.BuildErrors
	if errors.As(err, &many) {
		found := make([]Finding, 0, len(many))
		for _, e := range many {
			found = append(found, Finding{Rule: rule, Where: e.Path, Message: e.Message})
		}
		return found
	}
	return []Finding{{Rule: rule, Where: "dashboard", Message: err.Error()}}
}

// strictFieldConfigs decodes each panel's fieldConfig strictly as well: the SDK's panel
// decoder checks only its plugin-specific "custom" part strictly, so a misspelt standard
// option (unit, decimals, min, ...) would otherwise pass unnoticed.
func strictFieldConfigs(raw []byte) []Finding {
	var doc struct {
		Panels []struct {
			Title       string          `json:"title"`
			FieldConfig json.RawMessage `json:"fieldConfig"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return []Finding{{Rule: "strict-decode", Where: "dashboard", Message: err.Error()}}
	}
	var found []Finding
	for _, p := range doc.Panels {
		if p.FieldConfig == nil {
			continue
		}
		var fc dashboard.FieldConfigSource
		if err := fc.UnmarshalJSONStrict(p.FieldConfig); err != nil {
			for _, f := range buildErrors("strict-decode", err) {
				f.Where = fmt.Sprintf("panel %q fieldConfig.%s", p.Title, f.Where)
				found = append(found, f)
			}
		}
	}
	return found
}

// panels lists the dashboard's panels, those inside rows included.
func panels(d dashboard.Dashboard) []dashboard.Panel {
	var all []dashboard.Panel
	for _, item := range d.Panels {
		if item.Panel != nil {
			all = append(all, *item.Panel)
		}
		if item.RowPanel != nil {
			for _, inner := range item.RowPanel.Panels {
				all = append(all, inner)
			}
		}
	}
	return all
}

func describe(p dashboard.Panel) PanelReport {
	r := PanelReport{Type: p.Type, Title: deref(p.Title), Unit: unitOf(p), Targets: []Target{}}
	if p.Id != nil {
		r.ID = *p.Id
	}
	for _, t := range promTargets(p) {
		r.Targets = append(r.Targets, Target{RefID: deref(t.RefId), Expr: t.Expr})
	}
	return r
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
