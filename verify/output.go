package verify

import (
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

var tableChecks = []string{CheckIntegrity, CheckStructure, CheckRoundTrip, CheckGEMM, CheckAgainst}

// WriteTable prints one line per tensor, the violations, the notes and a
// summary line.
func (r *Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "TENSOR\tLAYOUT\tDTYPE\tSHAPE\tDENSITY\t%s\tGEMM |Δ|/tol\tRESULT\n", strings.ToUpper(strings.Join(tableChecks, "\t")))
	for _, t := range r.Tensors {
		layout := string(t.Layout)
		if layout == "" {
			layout = "-"
		}
		dens := "-"
		if t.Pruned {
			dens = fmt.Sprintf("%.3f", t.Density)
		}
		cells := make([]string, len(tableChecks))
		for i, c := range tableChecks {
			cells[i] = t.Checks[c]
			if cells[i] == "" {
				cells[i] = "-"
			}
		}
		g := "-"
		if t.GEMM != nil {
			g = fmt.Sprintf("%.2g", t.GEMM.WorstRatio)
		}
		res := "ok"
		if !t.OK() {
			res = "FAIL"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.Name, layout, t.DType, shapeString(t.Shape), dens, strings.Join(cells, "\t"), g, res)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	vs := r.AllViolations()
	if len(vs) > 0 {
		fmt.Fprintf(w, "\nviolations:\n")
		for _, v := range vs {
			fmt.Fprintf(w, "  %s\n", v)
		}
	}
	notes := append([]string(nil), r.Notes...)
	// Tensor notes, grouped: the same message for many tensors prints once.
	var order []string
	who := map[string][]string{}
	for _, t := range r.Tensors {
		tn := t.Notes
		if t.GEMM != nil && strings.HasPrefix(t.GEMM.Sparse, "reference") {
			tn = append(tn, "GEMM sparse side: "+t.GEMM.Sparse)
		}
		for _, n := range tn {
			if _, ok := who[n]; !ok {
				order = append(order, n)
			}
			who[n] = append(who[n], t.Name)
		}
	}
	for _, n := range order {
		notes = append(notes, fmt.Sprintf("%s: %s", listNames(who[n], 3), n))
	}
	if len(notes) > 0 {
		fmt.Fprintf(w, "\nnotes:\n")
		for _, n := range notes {
			fmt.Fprintf(w, "  %s\n", n)
		}
	}
	s := r.Summary
	verdict := "OK"
	if !s.OK {
		verdict = "FAILED"
	}
	manifest := "no manifest"
	if r.Manifest != "" {
		manifest = "manifest checked"
	}
	_, err := fmt.Fprintf(w, "\n%s: %s — layout %s, pattern %s, %d tensors (%d pruned, %d GEMM-checked), %d failed, %d violations, %s, %.1fs\n",
		r.Path, verdict, r.Layout, r.Pattern, s.Tensors, s.Pruned, s.GEMM, s.Failed, s.Violations, manifest, s.Seconds)
	return err
}

func shapeString(s []int64) string {
	p := make([]string, len(s))
	for i, d := range s {
		p[i] = fmt.Sprint(d)
	}
	return "[" + strings.Join(p, ",") + "]"
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	e := json.NewEncoder(w)
	e.SetIndent("", "  ")
	return e.Encode(r)
}

// JUnit XML (the schema Jenkins, GitLab and GitHub test reporters read).
type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Time     float64      `xml:"time,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name     string      `xml:"name,attr"`
	Tests    int         `xml:"tests,attr"`
	Failures int         `xml:"failures,attr"`
	Skipped  int         `xml:"skipped,attr"`
	Time     float64     `xml:"time,attr"`
	Cases    []junitCase `xml:"testcase"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Failure   *junitFailure `xml:"failure,omitempty"`
	Skipped   *struct{}     `xml:"skipped,omitempty"`
	SystemOut string        `xml:"system-out,omitempty"`
}

type junitFailure struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Text    string `xml:",chardata"`
}

// WriteJUnit writes the report as JUnit XML: one test suite for the
// checkpoint, one test case per tensor (classname "sparsify.verify.<check
// group>") plus one for the checkpoint-level checks.
func (r *Report) WriteJUnit(w io.Writer) error {
	s := junitSuite{Name: "sparsify verify " + r.Path, Time: r.Summary.Seconds}
	ck := junitCase{Name: "checkpoint (manifest, files, config)", Classname: "sparsify.verify.checkpoint"}
	if len(r.Violations) > 0 {
		ck.Failure = failureOf(r.Violations)
	}
	if len(r.Notes) > 0 {
		ck.SystemOut = strings.Join(r.Notes, "\n")
	}
	s.Cases = append(s.Cases, ck)
	for _, t := range r.Tensors {
		c := junitCase{Name: t.Name, Classname: "sparsify.verify.tensor"}
		if t.Pruned {
			c.Classname = "sparsify.verify.pruned." + string(t.Layout)
		}
		if !t.OK() {
			c.Failure = failureOf(t.Violations)
		}
		var out []string
		for _, k := range sortedKeys(t.Checks) {
			out = append(out, k+": "+t.Checks[k])
		}
		if t.GEMM != nil {
			out = append(out, fmt.Sprintf("gemm: max|Δ| %.3g, max|y| %.3g, worst |Δ|/tol %.3g, sparse side: %s", t.GEMM.MaxAbsDiff, t.GEMM.MaxAbsY, t.GEMM.WorstRatio, t.GEMM.Sparse))
		}
		out = append(out, t.Notes...)
		c.SystemOut = strings.Join(out, "\n")
		s.Cases = append(s.Cases, c)
	}
	for _, c := range s.Cases {
		s.Tests++
		if c.Failure != nil {
			s.Failures++
		}
	}
	doc := junitSuites{Name: "sparsify verify", Tests: s.Tests, Failures: s.Failures, Time: s.Time, Suites: []junitSuite{s}}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	e := xml.NewEncoder(w)
	e.Indent("", "  ")
	if err := e.Encode(doc); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}

func failureOf(vs []Violation) *junitFailure {
	lines := make([]string, len(vs))
	for i, v := range vs {
		lines[i] = v.String()
	}
	return &junitFailure{Message: vs[0].String(), Type: vs[0].Check, Text: strings.Join(lines, "\n")}
}
