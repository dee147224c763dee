package llama

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strings"

	"github.com/sparsify/sparsify/format/gguf"
)

// Side files of a Hugging Face directory made from a GGUF.
const (
	// TokenizerFile holds the GGUF tokenizer metadata (every "tokenizer.*"
	// key) as one JSON object, key → value, arrays as JSON arrays. The model
	// package's tokenizer reads it.
	TokenizerFile = "tokenizer.gguf.json"
	// MetadataFile keeps every GGUF metadata key with its type and the GGUF
	// tensor order, so that converting back reproduces the metadata exactly.
	// Tokenizer values are not repeated: their entries point at TokenizerFile.
	MetadataFile = "gguf-metadata.json"
	// ConfigFile is the Hugging Face model configuration.
	ConfigFile = "config.json"
)

// MetadataFormat is the "format" field of MetadataFile.
const MetadataFormat = "sparsify-gguf-metadata/1"

type metadataDoc struct {
	Format  string           `json:"format"`
	KV      []map[string]any `json:"kv"`
	Tensors []string         `json:"tensors,omitempty"` // GGUF tensor order
}

func isTokenizerKey(k string) bool { return strings.HasPrefix(k, "tokenizer.") }

// tokenizerTypes are the types llama.cpp's gguf writer gives the tokenizer
// keys, used when reading TokenizerFile without MetadataFile.
var tokenizerTypes = map[string][2]gguf.ValueType{
	"tokenizer.ggml.model":                    {gguf.TypeString, 0},
	"tokenizer.ggml.pre":                      {gguf.TypeString, 0},
	"tokenizer.chat_template":                 {gguf.TypeString, 0},
	"tokenizer.ggml.tokens":                   {gguf.TypeArray, gguf.TypeString},
	"tokenizer.ggml.merges":                   {gguf.TypeArray, gguf.TypeString},
	"tokenizer.ggml.scores":                   {gguf.TypeArray, gguf.TypeFloat32},
	"tokenizer.ggml.token_type":               {gguf.TypeArray, gguf.TypeInt32},
	"tokenizer.ggml.token_type_count":         {gguf.TypeUint32, 0},
	"tokenizer.ggml.add_bos_token":            {gguf.TypeBool, 0},
	"tokenizer.ggml.add_eos_token":            {gguf.TypeBool, 0},
	"tokenizer.ggml.add_space_prefix":         {gguf.TypeBool, 0},
	"tokenizer.ggml.remove_extra_whitespaces": {gguf.TypeBool, 0},
}

func tokenizerType(k string) (t, e gguf.ValueType, ok bool) {
	if te, ok := tokenizerTypes[k]; ok {
		return te[0], te[1], true
	}
	if strings.HasPrefix(k, "tokenizer.ggml.") && strings.HasSuffix(k, "_token_id") {
		return gguf.TypeUint32, 0, true
	}
	return 0, 0, false
}

// TokenizerJSON encodes the tokenizer.* keys of kvs as TokenizerFile; nil
// when there are none.
func TokenizerJSON(kvs []gguf.KV) ([]byte, error) {
	m := map[string]any{}
	for _, kv := range kvs {
		if isTokenizerKey(kv.Key) {
			m[kv.Key] = plainJSON(kv.Value)
		}
	}
	if len(m) == 0 {
		return nil, nil
	}
	return json.Marshal(m)
}

// ParseTokenizerJSON decodes the tokenizer.* keys of TokenizerFile into typed metadata, sorted by key
// (types from llama.cpp's conventions, else inferred from the JSON).
func ParseTokenizerJSON(data []byte) ([]gguf.KV, error) {
	var m map[string]any
	if err := decodeJSON(data, &m); err != nil {
		return nil, fmt.Errorf("llama: %s: %w", TokenizerFile, err)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		if isTokenizerKey(k) { // other keys are not ours to carry
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	kvs := make([]gguf.KV, 0, len(keys))
	for _, k := range keys {
		var v gguf.Value
		var err error
		if t, e, ok := tokenizerType(k); ok {
			v, err = convertValue(m[k], t, e)
		} else {
			v, err = inferValue(m[k])
		}
		if err != nil {
			return nil, fmt.Errorf("llama: %s: key %q: %w", TokenizerFile, k, err)
		}
		kvs = append(kvs, gguf.KV{Key: k, Value: v})
	}
	return kvs, nil
}

// HFFromGGUF turns GGUF metadata into the files of a Hugging Face directory:
// config.json, TokenizerFile (when the GGUF has a tokenizer) and MetadataFile.
// tensors are the GGUF tensor names in file order; torchDType is the
// config's torch_dtype ("float32", "bfloat16", ...; "" to leave it out).
func HFFromGGUF(kvs []gguf.KV, tensors []string, torchDType string) (map[string][]byte, Config, error) {
	cfg, err := FromGGUF(kvs)
	if err != nil {
		return nil, cfg, err
	}
	cfg.TieEmbeddings = true
	for _, t := range tensors {
		if t == "output.weight" {
			cfg.TieEmbeddings = false
		}
	}
	cfg.TorchDType = torchDType
	files := map[string][]byte{}
	cj, err := json.MarshalIndent(cfg.HFConfig(nil), "", "  ")
	if err != nil {
		return nil, cfg, err
	}
	files[ConfigFile] = append(cj, '\n')
	tj, err := TokenizerJSON(kvs)
	if err != nil {
		return nil, cfg, err
	}
	if tj != nil {
		files[TokenizerFile] = tj
	}
	doc := metadataDoc{Format: MetadataFormat, Tensors: tensors}
	for _, kv := range kvs {
		t := toTyped(kv.Value)
		e := map[string]any{"key": kv.Key, "type": t.Type}
		if t.Elem != "" {
			e["elem"] = t.Elem
		}
		if isTokenizerKey(kv.Key) {
			e["in"] = TokenizerFile
		} else {
			e["value"] = t.Value
		}
		doc.KV = append(doc.KV, e)
	}
	mj, err := json.MarshalIndent(doc, "", " ")
	if err != nil {
		return nil, cfg, err
	}
	files[MetadataFile] = append(mj, '\n')
	return files, cfg, nil
}

// GGUFFromHF builds GGUF metadata from a Hugging Face directory. read returns
// a file of the directory by name, an error wrapping fs.ErrNotExist when absent.
// With MetadataFile (a directory we made from a GGUF) the original keys, types
// and order come back, updated where config.json now says otherwise; without
// it the metadata is derived from config.json and the tokenizer from
// TokenizerFile, else tokenizer.json (BPE), else it is left out with a warning.
// order is the GGUF tensor order recorded in MetadataFile (nil if none).
func GGUFFromHF(read func(name string) ([]byte, error)) (kvs []gguf.KV, cfg Config, order []string, warnings []string, err error) {
	cj, err := read(ConfigFile)
	if err != nil {
		return nil, cfg, nil, nil, fmt.Errorf("llama: %s: %w", ConfigFile, err)
	}
	cfg, _, err = ParseHFConfig(cj)
	if err != nil {
		return nil, cfg, nil, nil, err
	}
	var tok []gguf.KV
	if tj, err := read(TokenizerFile); err == nil {
		if tok, err = ParseTokenizerJSON(tj); err != nil {
			return nil, cfg, nil, nil, err
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, cfg, nil, nil, err
	}
	tokByKey := map[string]gguf.Value{}
	for _, kv := range tok {
		tokByKey[kv.Key] = kv.Value
	}
	derived := cfg.GGUFKV()
	if mj, rerr := read(MetadataFile); rerr == nil {
		var doc metadataDoc
		if err := decodeJSON(mj, &doc); err != nil {
			return nil, cfg, nil, nil, fmt.Errorf("llama: %s: %w", MetadataFile, err)
		}
		if doc.Format != MetadataFormat {
			return nil, cfg, nil, nil, fmt.Errorf("llama: %s: format %q, want %q", MetadataFile, doc.Format, MetadataFormat)
		}
		seen := map[string]bool{}
		for i, e := range doc.KV {
			key, _ := e["key"].(string)
			if key == "" || seen[key] {
				return nil, cfg, nil, nil, fmt.Errorf("llama: %s: entry %d: missing or repeated key %q", MetadataFile, i, key)
			}
			seen[key] = true
			var v gguf.Value
			if in, _ := e["in"].(string); in != "" {
				tv, ok := tokByKey[key]
				if !ok {
					return nil, cfg, nil, nil, fmt.Errorf("llama: %s: key %q is in %s, which lacks it", MetadataFile, key, in)
				}
				// restore the recorded type
				ts, _ := e["type"].(string)
				es, _ := e["elem"].(string)
				t, terr := parseType(ts)
				if terr != nil {
					return nil, cfg, nil, nil, terr
				}
				var et gguf.ValueType
				if es != "" {
					if et, terr = parseType(es); terr != nil {
						return nil, cfg, nil, nil, terr
					}
				}
				if tv.Type != t || (t == gguf.TypeArray && tv.Elem != et && et != gguf.TypeArray) {
					tv, err = convertValue(plainJSONRoundTrip(tv), t, et)
					if err != nil {
						return nil, cfg, nil, nil, fmt.Errorf("llama: key %q: %w", key, err)
					}
				}
				v = tv
			} else {
				if v, err = fromTyped(e); err != nil {
					return nil, cfg, nil, nil, fmt.Errorf("llama: %s: key %q: %w", MetadataFile, key, err)
				}
			}
			kvs = append(kvs, gguf.KV{Key: key, Value: v})
		}
		// config.json wins where it disagrees with what the recorded
		// metadata implies.
		implied := map[string]gguf.Value{}
		if rc, err := FromGGUF(kvs); err == nil {
			for _, kv := range rc.GGUFKV() {
				implied[kv.Key] = kv.Value
			}
		}
		for _, d := range derived {
			i := indexKV(kvs, d.Key)
			if i < 0 {
				if iv, ok := implied[d.Key]; !ok || !sameValue(iv, d.Value) {
					kvs = append(kvs, d)
				}
				continue
			}
			if !sameValue(kvs[i].Value, d.Value) {
				kvs[i].Value = castLike(d.Value, kvs[i].Value)
			}
		}
		for _, kv := range tok {
			if indexKV(kvs, kv.Key) < 0 {
				kvs = append(kvs, kv)
			}
		}
		return kvs, cfg, doc.Tensors, nil, nil
	} else if !errors.Is(rerr, fs.ErrNotExist) {
		return nil, cfg, nil, nil, rerr
	}
	kvs = append(kvs, derived...)
	if len(tok) == 0 {
		tj, err := read("tokenizer.json")
		switch {
		case err == nil:
			tok, err = TokenizerFromHF(tj, cfg)
			if err != nil {
				warnings = append(warnings, fmt.Sprintf("tokenizer.json not carried into the GGUF: %v", err))
			}
		case errors.Is(err, fs.ErrNotExist):
			warnings = append(warnings, "no "+TokenizerFile+" or tokenizer.json: the GGUF has no tokenizer metadata")
		default:
			return nil, cfg, nil, nil, err
		}
	}
	kvs = append(kvs, tok...)
	return kvs, cfg, nil, warnings, nil
}

func plainJSONRoundTrip(v gguf.Value) any {
	b, _ := json.Marshal(plainJSON(v))
	var x any
	_ = decodeJSON(b, &x)
	return x
}

func indexKV(kvs []gguf.KV, key string) int {
	for i, kv := range kvs {
		if kv.Key == key {
			return i
		}
	}
	return -1
}

// sameValue compares scalars numerically (float32 precision for floats).
func sameValue(a, b gguf.Value) bool {
	if s, ok := a.Data.(string); ok {
		t, ok := b.Data.(string)
		return ok && s == t
	}
	fa, ok1 := a.Float()
	fb, ok2 := b.Float()
	return ok1 && ok2 && float32(fa) == float32(fb)
}

// castLike converts v to the type of like where both are numbers.
func castLike(v, like gguf.Value) gguf.Value {
	f, ok := v.Float()
	if !ok {
		return v
	}
	x := plainJSONRoundTrip(gguf.MustValue(f))
	if like.Type != gguf.TypeFloat32 && like.Type != gguf.TypeFloat64 {
		if i, ok := v.Int(); ok {
			x = json.Number(fmt.Sprint(i))
		}
	}
	c, err := convertScalar(x, like.Type)
	if err != nil {
		return v
	}
	return c
}
