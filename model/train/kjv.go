package train

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// Chapter is one chapter of the KJV: its heading ("Genesis 1") and verses.
type Chapter struct {
	Title  string
	Verses []string
}

// ParseKJV reads the text the bible-kjv package's `bible -l100000
// Ge1:1-Re22:21` prints: a heading line per chapter ("Genesis 1"), then one
// line per verse ("  1 In the beginning ..."), blank lines between. Each
// verse's number is dropped.
func ParseKJV(r io.Reader) ([]Chapter, error) {
	var out []Chapter
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		s := sc.Text()
		t := strings.TrimSpace(s)
		switch {
		case t == "":
		case s[0] == ' ':
			num, text, ok := strings.Cut(t, " ")
			if !ok || strings.Trim(num, "0123456789") != "" || len(out) == 0 {
				return nil, fmt.Errorf("train: KJV line %d: want \"  N verse text\" after a chapter heading, got %q", line, s)
			}
			out[len(out)-1].Verses = append(out[len(out)-1].Verses, strings.Join(strings.Fields(text), " "))
		default:
			out = append(out, Chapter{Title: t})
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("train: reading KJV text: %w", err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("train: KJV text has no chapters")
	}
	return out, nil
}

// Paragraphs cuts a chapter into paragraphs of up to n verses joined by
// spaces.
func (c Chapter) Paragraphs(n int) []string {
	var out []string
	for i := 0; i < len(c.Verses); i += n {
		out = append(out, strings.Join(c.Verses[i:min(i+n, len(c.Verses))], " "))
	}
	return out
}

// Split is the fixed partition of the chapters used by the demo recipe:
// every 20th chapter from the 11th (Genesis 11, Genesis 31, ...) is held out
// for evaluation (valid); every 20th from the 1st is the shipped calibration
// slice (calib, also part of train); all chapters not held out train the
// weights.
func Split(chs []Chapter, versesPerParagraph int) (train, calib, valid []string) {
	for i, c := range chs {
		ps := c.Paragraphs(versesPerParagraph)
		switch i % 20 {
		case 10:
			valid = append(valid, ps...)
			continue
		case 0:
			calib = append(calib, ps...)
		}
		train = append(train, ps...)
	}
	return train, calib, valid
}
