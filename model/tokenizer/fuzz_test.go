package tokenizer

import (
	"os"
	"path/filepath"
	"testing"
	"unicode/utf8"
)

func sharedFile(name string) []byte {
	b, _ := os.ReadFile(filepath.Join("..", "..", "..", "shared", "data", name))
	return b
}

// FuzzParseLlama2C feeds arbitrary bytes as tokenizer.bin; a vocabulary that
// parses must encode and decode any text without panicking, and valid UTF-8
// text must round-trip.
func FuzzParseLlama2C(f *testing.F) {
	if b := sharedFile("tok512.bin"); b != nil {
		f.Add(b, "Once upon a time")
	}
	f.Add([]byte{4, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 'a'}, "aaa")
	f.Fuzz(func(t *testing.T, data []byte, text string) {
		tk, err := ParseLlama2C("fuzz", data, 0)
		if err != nil {
			return
		}
		ids := tk.Encode(text, true)
		dec := tk.Decode(ids)
		if len(tk.spec.Tokens) >= 259 && utf8.ValidString(text) && text != "" && dec != text && tk.byteID[0] >= 0 {
			// only full byte-fallback vocabularies promise a round trip
			full := true
			for b := range tk.byteID {
				full = full && tk.byteID[b] >= 0
			}
			if full {
				t.Fatalf("round trip %q → %q", text, dec)
			}
		}
	})
}

// FuzzParseHF feeds arbitrary tokenizer.json bytes.
func FuzzParseHF(f *testing.F) {
	f.Add([]byte(`{"model":{"type":"BPE","vocab":{"a":0,"b":1,"ab":2},"merges":["a b"]},"pre_tokenizer":{"type":"ByteLevel"}}`), "abab")
	f.Add([]byte(`{"model":{"type":"BPE","vocab":{"<0x41>":0,"▁":1},"merges":[["▁","A"]],"byte_fallback":true},"normalizer":{"type":"Prepend"}}`), "A A")
	f.Fuzz(func(t *testing.T, data []byte, text string) {
		tk, err := ParseHF(data, nil)
		if err != nil {
			return
		}
		_ = tk.Decode(tk.Encode(text, true))
	})
}
