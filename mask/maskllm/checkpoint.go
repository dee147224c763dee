package maskllm

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"

	"github.com/sparsify/sparsify/format"
	"github.com/sparsify/sparsify/format/safetensors"
)

// A checkpoint (OUT/logits.safetensors) is a safetensors file with, for every
// masked weight NAME, three F32 [groups, 6] tensors "NAME.logits",
// "NAME.adam_m" and "NAME.adam_v", and metadata: "format" =
// CheckpointFormat, "step" (completed steps), "steps" (the run's T), "seed",
// "adam_t" (AdamW's step count) and "candidates" (the candidate order).
// The Gumbel noise and data windows are pure functions of (seed, step), so
// (seed, step) is the whole RNG state.

// CheckpointFormat is the "format" metadata value of a checkpoint.
const CheckpointFormat = "sparsify-maskllm-logits-v1"

// Checkpoint-tensor suffixes.
const (
	SuffixLogits = ".logits"
	SuffixAdamM  = ".adam_m"
	SuffixAdamV  = ".adam_v"
)

// ErrCheckpoint reports a file that is not a usable logits checkpoint.
var ErrCheckpoint = errors.New("maskllm: not a logits checkpoint")

// Checkpoint is the state of a run: per weight name, logits and AdamW moments
// ([groups*6] each; moments may be nil in a transfer-only file).
type Checkpoint struct {
	Step, Steps int
	Seed        uint64
	Tensors     map[string][]float32 // by full tensor name (NAME + suffix)
	Meta        map[string]string
}

type stEntry struct {
	DType       string   `json:"dtype"`
	Shape       []int64  `json:"shape"`
	DataOffsets [2]int64 `json:"data_offsets"`
}

func ckErr(path, tensor string, off int64, f string, args ...any) error {
	return fmt.Errorf("%w: %w", ErrCheckpoint, &format.FormatError{File: path, Tensor: tensor, Offset: off, Msg: fmt.Sprintf(f, args...)})
}

// WriteCheckpoint writes c atomically (temporary file, fsync, rename).
//
// It lays the file out itself (sorted names, contiguous data, JSON header
// padded to 8 bytes, as format/safetensors writes) rather than calling
// safetensors.WriteFile, because that writer forces metadata "format" to
// "pt" and the checkpoint's "format" key must stay CheckpointFormat (the
// on-disk format; IsCheckpoint keys on it). Reading goes through
// format/safetensors.
func WriteCheckpoint(path string, c *Checkpoint) error {
	names := make([]string, 0, len(c.Tensors))
	for n := range c.Tensors {
		if n == "" || n == "__metadata__" {
			return fmt.Errorf("maskllm: write %s: invalid tensor name %q", path, n)
		}
		if len(c.Tensors[n])%NumCandidates != 0 {
			return fmt.Errorf("maskllm: write %s: tensor %q has %d values, not a multiple of %d", path, n, len(c.Tensors[n]), NumCandidates)
		}
		names = append(names, n)
	}
	slices.Sort(names)
	meta := map[string]string{}
	for k, v := range c.Meta {
		meta[k] = v
	}
	meta["format"] = CheckpointFormat
	meta["step"] = strconv.Itoa(c.Step)
	meta["steps"] = strconv.Itoa(c.Steps)
	meta["seed"] = strconv.FormatUint(c.Seed, 10)
	meta["candidates"] = "1100,1010,1001,0110,0101,0011"
	hdr := map[string]any{"__metadata__": meta}
	var off int64
	for _, n := range names {
		sz := int64(len(c.Tensors[n])) * 4
		hdr[n] = stEntry{DType: "F32", Shape: []int64{int64(len(c.Tensors[n]) / NumCandidates), NumCandidates}, DataOffsets: [2]int64{off, off + sz}}
		off += sz
	}
	js, err := json.Marshal(hdr)
	if err != nil {
		return fmt.Errorf("maskllm: write %s: %w", path, err)
	}
	for len(js)%8 != 0 {
		js = append(js, ' ')
	}
	f, err := format.CreateAtomic(path)
	if err != nil {
		return fmt.Errorf("maskllm: %w", err)
	}
	defer f.Abort()
	bw := bufio.NewWriterSize(f, 1<<20)
	var l [8]byte
	binary.LittleEndian.PutUint64(l[:], uint64(len(js)))
	bw.Write(l[:])
	bw.Write(js)
	var b [4]byte
	for _, n := range names {
		for _, v := range c.Tensors[n] {
			binary.LittleEndian.PutUint32(b[:], math.Float32bits(v))
			bw.Write(b[:])
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("maskllm: write %s: %w", path, err)
	}
	if err := f.Commit(); err != nil {
		return fmt.Errorf("maskllm: write %s: %w", path, err)
	}
	return nil
}

// ReadCheckpoint loads a checkpoint (format/safetensors parses the file; this
// checks what makes it a checkpoint). Errors on bad input wrap ErrCheckpoint
// and a *format.FormatError naming file, tensor and byte offset.
func ReadCheckpoint(path string) (*Checkpoint, error) {
	sf, err := openCheckpoint(path)
	if err != nil {
		return nil, err
	}
	defer sf.Close()
	c := &Checkpoint{Tensors: map[string][]float32{}, Meta: sf.Metadata()}
	atoi := func(k string) (int, error) {
		v, err := strconv.Atoi(c.Meta[k])
		if err != nil || v < 0 {
			return 0, ckErr(path, "", 8, "metadata %s=%q is not a count", k, c.Meta[k])
		}
		return v, nil
	}
	if c.Step, err = atoi("step"); err != nil {
		return nil, err
	}
	if c.Steps, err = atoi("steps"); err != nil {
		return nil, err
	}
	if c.Seed, err = strconv.ParseUint(c.Meta["seed"], 10, 64); err != nil {
		return nil, ckErr(path, "", 8, "metadata seed=%q is not an unsigned integer", c.Meta["seed"])
	}
	for _, ti := range sf.Tensors() {
		if ti.DType != format.F32 {
			return nil, ckErr(path, ti.Name, ti.Offset, "dtype %v, want F32", ti.DType)
		}
		if len(ti.Shape) != 2 || ti.Shape[1] != NumCandidates {
			return nil, ckErr(path, ti.Name, ti.Offset, "shape %v, want [groups, %d]", ti.Shape, NumCandidates)
		}
		// the reader checked Size = groups*6*4 against the file's data.
		b, err := sf.ReadTensor(ti.Name)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrCheckpoint, err)
		}
		v := make([]float32, len(b)/4)
		for i := range v {
			x := math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
			if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
				return nil, ckErr(path, ti.Name, ti.Offset+int64(4*i), "value %v is not finite", x)
			}
			v[i] = x
		}
		c.Tensors[ti.Name] = v
	}
	return c, nil
}

// IsCheckpoint reports whether path is a safetensors file whose metadata
// says it is a logits checkpoint (without reading the tensors).
func IsCheckpoint(path string) bool {
	sf, err := openCheckpoint(path)
	if err != nil {
		return false
	}
	sf.Close()
	return true
}

// openCheckpoint opens path and checks its "format" metadata.
func openCheckpoint(path string) (*safetensors.File, error) {
	sf, err := safetensors.Open(path)
	if err != nil {
		if errors.Is(err, format.ErrFormat) {
			return nil, fmt.Errorf("%w: %w", ErrCheckpoint, err)
		}
		return nil, fmt.Errorf("maskllm: %w", err)
	}
	if f := sf.Metadata()["format"]; f != CheckpointFormat {
		sf.Close()
		return nil, ckErr(path, "", 8, "metadata format %q, want %q", f, CheckpointFormat)
	}
	return sf, nil
}
