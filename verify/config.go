package verify

import (
	"encoding/binary"
	"encoding/json"
	"io"
	"os"
	"regexp"
	"strings"

	"github.com/sparsify/sparsify/pack"
)

// checkConfig: config.json carries a compressed-tensors sparsity_config iff
// the weights are in the bitmask layout, and that config covers every
// bitmask-packed module with the fields vLLM needs
// (sparse-checkpoint-formats §2, §6.1, §8.4).
func (v *verifier) checkConfig(groups []pack.PackedWeight) {
	var bitmask []string
	for _, g := range groups {
		if g.Layout == pack.Bitmask {
			bitmask = append(bitmask, g.Module)
		}
	}
	cfg := v.ck.Config
	if v.ck.Dir == nil {
		if len(bitmask) > 0 {
			v.rep.Notes = append(v.rep.Notes, "single-file checkpoint: no config.json to carry the compressed-tensors sparsity_config")
		}
		return
	}
	if cfg == nil {
		if len(bitmask) > 0 {
			v.rep.Notes = append(v.rep.Notes, "no config.json: compressed-tensors readers will not know the bitmask layout")
		}
		return
	}
	var raw map[string]any
	if err := json.Unmarshal(cfg, &raw); err != nil {
		v.rep.violate(CheckConfig, "config.json", "", "not valid JSON: %v", err)
		return
	}
	qc, _ := raw["quantization_config"].(map[string]any)
	sc, _ := qc["sparsity_config"].(map[string]any)
	if _, top := raw["sparsity_config"]; top {
		v.rep.violate(CheckConfig, "config.json", "", "top-level sparsity_config: compressed-tensors only reads quantization_config.sparsity_config")
	}
	if _, legacy := raw["compression_config"]; legacy {
		v.rep.violate(CheckConfig, "config.json", "", "legacy compression_config key: write quantization_config")
	}
	if len(bitmask) == 0 {
		if len(sc) > 0 {
			v.rep.violate(CheckConfig, "config.json", "", "quantization_config.sparsity_config (format %v) is present but no weight is bitmask-packed (layout %s): vLLM >= 0.19 refuses to load it", sc["format"], v.rep.Layout)
		}
		return
	}
	if len(sc) == 0 {
		v.rep.violate(CheckConfig, "config.json", bitmask[0]+".compressed", "%d bitmask-packed weights but no quantization_config.sparsity_config: compressed-tensors readers cannot decompress them", len(bitmask))
		return
	}
	if qc["quant_method"] != "compressed-tensors" {
		v.rep.violate(CheckConfig, "config.json", "", "quantization_config.quant_method is %v, want \"compressed-tensors\"", qc["quant_method"])
	}
	if sc["format"] != "sparse-24-bitmask" {
		v.rep.violate(CheckConfig, "config.json", "", "sparsity_config.format is %v, want \"sparse-24-bitmask\"", sc["format"])
	}
	if sc["sparsity_structure"] != "2:4" {
		v.rep.violate(CheckConfig, "config.json", "", "sparsity_config.sparsity_structure is %v, want exactly \"2:4\" (vLLM compares the string)", sc["sparsity_structure"])
	}
	targets := strs(sc["targets"])
	ignore := strs(sc["ignore"])
	if len(targets) == 0 {
		v.rep.violate(CheckConfig, "config.json", "", "sparsity_config.targets is empty: no layer would be decompressed")
		return
	}
	for _, m := range bitmask {
		if !ctMatch(m, targets) || ctMatch(m, ignore) {
			v.rep.violate(CheckConfig, "config.json", m+".compressed", "module %q is bitmask-packed but not selected by sparsity_config targets %v / ignore %v", m, targets, ignore)
		}
	}
}

func strs(x any) []string {
	l, _ := x.([]any)
	var out []string
	for _, e := range l {
		if s, ok := e.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

// ctMatch applies compressed-tensors' target grammar to a module path:
// "re:REGEX" matches the path, a class name ("Linear") matches every linear
// module (every module packed here is one), else an exact path or a dotted
// suffix.
func ctMatch(module string, pats []string) bool {
	for _, p := range pats {
		switch {
		case strings.HasPrefix(p, "re:"):
			if re, err := regexp.Compile(p[3:]); err == nil && re.MatchString(module) {
				return true
			}
		case p == "Linear":
			return true
		case p == module, strings.HasSuffix(module, "."+p):
			return true
		}
	}
	return false
}

// truncatedTensors parses a safetensors header and lists the tensors whose
// data runs past the end of the file. Best effort: nil when the header itself
// is unreadable or the file is compressed.
func truncatedTensors(path string) []truncated {
	if strings.HasSuffix(path, ".zst") {
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil
	}
	size := st.Size()
	var nb [8]byte
	if _, err := io.ReadFull(f, nb[:]); err != nil {
		return nil
	}
	n := binary.LittleEndian.Uint64(nb[:])
	if n > 100_000_000 || int64(n) > size-8 {
		return nil
	}
	hdr := make([]byte, n)
	if _, err := io.ReadFull(f, hdr); err != nil {
		return nil
	}
	var entries map[string]json.RawMessage
	if json.Unmarshal(hdr, &entries) != nil {
		return nil
	}
	var out []truncated
	for _, name := range sortedKeys(entries) {
		if name == "__metadata__" {
			continue
		}
		var e struct {
			Offsets []int64 `json:"data_offsets"`
		}
		if json.Unmarshal(entries[name], &e) != nil || len(e.Offsets) != 2 {
			continue
		}
		if end := 8 + int64(n) + e.Offsets[1]; end > size {
			out = append(out, truncated{name: name, end: end, size: size})
		}
	}
	return out
}
