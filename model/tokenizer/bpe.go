package tokenizer

import (
	"container/heap"
	"sort"
	"strings"
	"unicode/utf8"
)

// symbol is one piece of the text being merged, in a doubly linked list.
type symbol struct {
	text       string
	prev, next int
}

type bigram struct {
	left, right int     // symbol indices
	prio        float64 // lower merges first
	size        int     // len(left.text)+len(right.text) when queued, to detect stale entries
}

type bigramQueue []bigram

func (q bigramQueue) Len() int { return len(q) }
func (q bigramQueue) Less(i, j int) bool {
	if q[i].prio != q[j].prio {
		return q[i].prio < q[j].prio
	}
	return q[i].left < q[j].left
}
func (q bigramQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *bigramQueue) Push(x any)   { *q = append(*q, x.(bigram)) }
func (q *bigramQueue) Pop() any {
	old := *q
	x := old[len(old)-1]
	*q = old[:len(old)-1]
	return x
}

// merge runs BPE over the initial pieces: repeatedly the best adjacent pair
// (highest merged-piece score for SPM, lowest merge rank otherwise; leftmost
// on ties) is joined, exactly as llama.cpp, llama2.c, SentencePiece and
// Hugging Face tokenizers do. It returns the final pieces in order.
func (t *Tokenizer) merge(pieces []string) []string {
	if len(pieces) < 2 {
		return pieces
	}
	syms := make([]symbol, len(pieces))
	for i, p := range pieces {
		syms[i] = symbol{text: p, prev: i - 1, next: i + 1}
	}
	syms[len(syms)-1].next = -1
	q := &bigramQueue{}
	try := func(l, r int) {
		if l < 0 || r < 0 {
			return
		}
		a, b := syms[l].text, syms[r].text
		var prio float64
		if t.spec.Kind == SPM {
			id, ok := t.ids[a+b]
			if !ok {
				return
			}
			prio = -float64(t.spec.Scores[id])
		} else {
			rank, ok := t.ranks[[2]string{a, b}]
			if !ok {
				return
			}
			prio = float64(rank)
		}
		heap.Push(q, bigram{left: l, right: r, prio: prio, size: len(a) + len(b)})
	}
	for i := 0; i+1 < len(syms); i++ {
		try(i, i+1)
	}
	for q.Len() > 0 {
		bg := heap.Pop(q).(bigram)
		l, r := &syms[bg.left], &syms[bg.right]
		if l.text == "" || r.text == "" || l.next != bg.right || len(l.text)+len(r.text) != bg.size {
			continue // stale
		}
		l.text += r.text
		r.text = ""
		l.next = r.next
		if r.next >= 0 {
			syms[r.next].prev = bg.left
		}
		try(l.prev, bg.left)
		try(bg.left, l.next)
	}
	out := pieces[:0:0]
	for i := 0; i >= 0; i = syms[i].next {
		out = append(out, syms[i].text)
	}
	return out
}

// encodeSPM encodes text whose spaces are already ▁.
func (t *Tokenizer) encodeSPM(out []int32, text string) []int32 {
	pieces := make([]string, 0, len(text))
	for i := 0; i < len(text); {
		_, n := utf8.DecodeRuneInString(text[i:])
		pieces = append(pieces, text[i:i+n])
		i += n
	}
	for _, p := range t.merge(pieces) {
		if id, ok := t.ids[p]; ok && t.spec.Types[id] != TypeByte {
			out = append(out, id)
			continue
		}
		for _, b := range []byte(p) {
			switch {
			case t.byteID[b] >= 0:
				out = append(out, t.byteID[b])
			case t.spec.UNK >= 0:
				out = append(out, t.spec.UNK)
			}
		}
	}
	return out
}

// encodeByteLevel encodes text GPT-2 style.
func (t *Tokenizer) encodeByteLevel(out []int32, text string) []int32 {
	for len(text) > 0 {
		// split off the next special token
		cut, sp := len(text), ""
		for _, s := range t.special {
			if i := strings.Index(text, s); i >= 0 && (i < cut || (i == cut && len(s) > len(sp))) {
				cut, sp = i, s
			}
		}
		for _, word := range t.pre.split(text[:cut]) {
			out = t.encodeWord(out, word)
		}
		if sp == "" {
			break
		}
		out = append(out, t.ids[sp])
		text = text[cut+len(sp):]
	}
	return out
}

func (t *Tokenizer) encodeWord(out []int32, word string) []int32 {
	if t.spec.IgnoreMerges {
		var b strings.Builder
		for i := 0; i < len(word); i++ {
			b.WriteRune(byteToRune[word[i]])
		}
		if id, ok := t.ids[b.String()]; ok {
			return append(out, id)
		}
	}
	pieces := make([]string, len(word))
	for i := 0; i < len(word); i++ {
		pieces[i] = string(byteToRune[word[i]])
	}
	for _, p := range t.merge(pieces) {
		if id, ok := t.ids[p]; ok {
			out = append(out, id)
			continue
		}
		for _, r := range p { // unmerged piece missing from the vocabulary: its bytes
			if b, ok := runeToByte[r]; ok && t.byteID[b] >= 0 {
				out = append(out, t.byteID[b])
			} else if t.spec.UNK >= 0 {
				out = append(out, t.spec.UNK)
			}
		}
	}
	return out
}

func sortByLenDesc(s []string) {
	sort.SliceStable(s, func(i, j int) bool { return len(s[i]) > len(s[j]) })
}

// byteToRune is GPT-2's reversible map from bytes to printable characters.
var byteToRune, runeToByte = func() ([256]rune, map[rune]byte) {
	var bt [256]rune
	rb := make(map[rune]byte, 256)
	n := 0
	for b := 0; b < 256; b++ {
		if (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF) {
			bt[b] = rune(b)
		} else {
			bt[b] = rune(256 + n)
			n++
		}
		rb[bt[b]] = byte(b)
	}
	return bt, rb
}()
