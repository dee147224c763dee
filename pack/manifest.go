package pack

import (
	"encoding/json"
	"fmt"
	"os"
)

// ManifestName is the file every sparse checkpoint sparsify writes carries.
const ManifestName = "sparsify.json"

// ManifestFormat is the current Manifest.Format.
const ManifestFormat = "sparsify-manifest/1"

// Manifest records what was done to a checkpoint: layout, pattern, the method
// that chose the masks, and a sha256 of every output file and tensor.
// verify checks a checkpoint against it.
type Manifest struct {
	Format  string   `json:"format"`  // "sparsify-manifest/1"
	Tool    string   `json:"tool"`    // "sparsify <version>"
	Layout  Layout   `json:"layout"`  // dense, cutlass, bitmask
	Pattern string   `json:"pattern"` // "2:4", "1:2", ...
	Method  Method   `json:"method"`
	Targets []string `json:"targets"` // regular expressions on tensor names
	Ignore  []string `json:"ignore"`
	Input   Input    `json:"input"`
	Files   []File   `json:"files"`
	Tensors []Tensor `json:"tensors"`
	Pruned  []Pruned `json:"pruned"` // one per pruned weight

	// OutputFormat is the container written: "safetensors" or "gguf".
	OutputFormat string `json:"output_format,omitempty"`
	// DType is the --dtype asked for (keep, f32, f16, bf16).
	DType string `json:"dtype,omitempty"`
	// Compress is "zstd" when the files are zstd-compressed.
	Compress string `json:"compress,omitempty"`
	// Warnings repeats the warnings the conversion printed.
	Warnings []string `json:"warnings,omitempty"`
}

// Method is how the masks were chosen.
type Method struct {
	Name           string         `json:"name"` // none, magnitude, wanda, sparsegpt, sparsegpt-mask, maskllm, mask-file
	Settings       map[string]any `json:"settings,omitempty"`
	WeightsUpdated bool           `json:"weights_updated"` // SparseGPT changes kept weights
}

// Input identifies the checkpoint the output was made from.
type Input struct {
	Path   string `json:"path"`
	Format string `json:"format"` // safetensors, gguf
	Files  []File `json:"files"`
	// Sparse is the layout the input was already packed in ("" if dense).
	Sparse string `json:"sparse,omitempty"`
}

// File is one file with its size and sha256 (hex).
type File struct {
	Name   string `json:"name"` // relative to the checkpoint directory
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Tensor is one stored tensor with the sha256 of its bytes.
type Tensor struct {
	Name   string  `json:"name"`
	File   string  `json:"file"`
	DType  string  `json:"dtype"`
	Shape  []int64 `json:"shape"`
	SHA256 string  `json:"sha256"`
	Size   int64   `json:"size,omitempty"`
}

// Pruned is one pruned weight: its module path and the tensors that hold it.
type Pruned struct {
	Weight  string   `json:"weight"` // original name, "P.weight"
	Rows    int      `json:"rows"`
	Cols    int      `json:"cols"`
	DType   string   `json:"dtype"`
	Tensors []string `json:"tensors"` // names on disk (P.packed, P.meta, P.shape / P.weight / ...)

	// Name is the weight's name in the output when it differs from Weight
	// (HF ↔ GGUF conversion).
	Name string `json:"name,omitempty"`
	// Layout is how this weight is stored: the manifest's layout, or "dense"
	// when its shape does not fit that layout (Reason says why).
	Layout Layout `json:"layout"`
	Reason string `json:"reason,omitempty"`
	// Density is the fraction of weights kept.
	Density float64 `json:"density"`
}

// ReadManifest reads a sparsify.json.
func ReadManifest(path string) (*Manifest, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if m.Format != ManifestFormat {
		return nil, fmt.Errorf("%s: manifest format %q, want %q", path, m.Format, ManifestFormat)
	}
	return &m, nil
}
