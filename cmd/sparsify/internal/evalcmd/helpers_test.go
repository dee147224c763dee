package evalcmd_test

import "fmt"

// fmtSscan reads the perplexity and the masked layer count of the text line.
func fmtSscan(line string, ppl *float64, layers *int) (int, error) {
	var seq, chunks, toks int
	return fmt.Sscanf(line, "perplexity %f  (seq-len %d, %d chunks, %d predicted tokens, %d layers masked", ppl, &seq, &chunks, &toks, layers)
}
