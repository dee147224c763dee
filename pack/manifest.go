package pack

// ManifestName is the file every sparse checkpoint sparsify writes carries.
const ManifestName = "sparsify.json"

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
}

// Pruned is one pruned weight: its module path and the tensors that hold it.
type Pruned struct {
	Weight  string   `json:"weight"` // original name, "P.weight"
	Rows    int      `json:"rows"`
	Cols    int      `json:"cols"`
	DType   string   `json:"dtype"`
	Tensors []string `json:"tensors"` // names on disk (P.packed, P.meta, P.shape / P.weight / ...)
}
