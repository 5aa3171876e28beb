package audit

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// Write prints rows and summaries as "table", "json" or "csv".
func Write(w io.Writer, format string, rows []Row, sums []Summary) error {
	switch format {
	case "", "table":
		return writeTable(w, rows, sums)
	case "json":
		return writeJSON(w, rows, sums)
	case "csv":
		return writeCSV(w, rows)
	default:
		return fmt.Errorf("output format %q is not one of table, json, csv", format)
	}
}

// writeJSON writes {"rows": [...], "summary": [...]} indented by two
// spaces, as json.Encoder with SetIndent("", "  ") would, but one row at a
// time: encoding the whole document first would hold a second copy of a
// large cluster's audit (about 600 bytes a row) in memory.
func writeJSON(w io.Writer, rows []Row, sums []Summary) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	if len(rows) == 0 {
		bw.WriteString("{\n  \"rows\": [],\n")
	} else {
		bw.WriteString("{\n  \"rows\": [\n")
		for i, r := range rows {
			b, err := json.MarshalIndent(r, "    ", "  ")
			if err != nil {
				return fmt.Errorf("encode row %s/%s %s: %w", r.Namespace, r.Name, r.Image, err)
			}
			bw.WriteString("    ")
			bw.Write(b)
			if i < len(rows)-1 {
				bw.WriteByte(',')
			}
			bw.WriteByte('\n')
		}
		bw.WriteString("  ],\n")
	}
	b, err := json.MarshalIndent(sums, "  ", "  ")
	if err != nil {
		return fmt.Errorf("encode summary: %w", err)
	}
	bw.WriteString("  \"summary\": ")
	bw.Write(b)
	bw.WriteString("\n}\n")
	return bw.Flush()
}

func writeTable(w io.Writer, rows []Row, sums []Summary) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	head := []string{"NAMESPACE", "OBJECT", "IMAGE"}
	multi := len(sums) > 1
	for _, s := range sums {
		if multi {
			head = append(head, "VERDICT ("+s.Policy+")")
		} else {
			head = append(head, "VERDICT")
		}
	}
	head = append(head, "VERIFIERS", "WHY")
	fmt.Fprintln(tw, strings.Join(head, "\t"))
	for _, r := range rows {
		cols := []string{r.Namespace, r.Kind + "/" + r.Name, r.Image}
		var why, verifiers string
		for _, v := range r.Verdicts {
			verdict := v.Verdict
			if len(v.Deprecated) > 0 {
				verdict += " (deprecated only)"
			}
			cols = append(cols, verdict)
		}
		if len(r.Verdicts) > 0 {
			first := r.Verdicts[0]
			verifiers = strings.Join(first.Verifiers, ",")
			why = first.Reason
			for _, v := range r.Verdicts[1:] {
				if v.Verdict != first.Verdict {
					why += " | " + v.Policy + ": " + v.Reason
				}
			}
		}
		if verifiers == "" {
			verifiers = "-"
		}
		cols = append(cols, verifiers, oneLine(why))
		fmt.Fprintln(tw, strings.Join(cols, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	for _, s := range sums {
		fmt.Fprintln(w, s.String())
	}
	return nil
}

func writeCSV(w io.Writer, rows []Row) error {
	cw := csv.NewWriter(w)
	if err := cw.Write([]string{"policy", "namespace", "kind", "name", "image", "paths", "verdict", "rule", "digest", "verifiers", "deprecated", "reason"}); err != nil {
		return err
	}
	for _, r := range rows {
		for _, v := range r.Verdicts {
			rec := []string{v.Policy, r.Namespace, r.Kind, r.Name, r.Image, strings.Join(r.Paths, " "), v.Verdict, v.Rule, v.Digest,
				strings.Join(v.Verifiers, " "), strings.Join(v.Deprecated, " "), oneLine(v.Reason)}
			if err := cw.Write(rec); err != nil {
				return err
			}
		}
	}
	cw.Flush()
	return cw.Error()
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
