package maskllm

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"

	"github.com/sparsify/sparsify/format"
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

const maxHeader = 64 << 20

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

// ReadCheckpoint loads a checkpoint. Errors on bad input wrap ErrCheckpoint
// and a *format.FormatError naming file, tensor and byte offset.
func ReadCheckpoint(path string) (*Checkpoint, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("maskllm: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("maskllm: %w", err)
	}
	return readCheckpoint(path, f, st.Size())
}

// IsCheckpoint reports whether path is a safetensors file whose metadata
// says it is a logits checkpoint (without reading the tensors).
func IsCheckpoint(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return false
	}
	raw, _, err := readHeader(path, f, st.Size())
	if err != nil {
		return false
	}
	var meta map[string]string
	if m, ok := raw["__metadata__"]; !ok || json.Unmarshal(m, &meta) != nil {
		return false
	}
	return meta["format"] == CheckpointFormat
}

func readHeader(path string, r io.ReaderAt, size int64) (map[string]json.RawMessage, int64, error) {
	if size < 8 {
		return nil, 0, ckErr(path, "", 0, "file of %d bytes is too short for a safetensors header", size)
	}
	var l [8]byte
	if _, err := r.ReadAt(l[:], 0); err != nil {
		return nil, 0, fmt.Errorf("maskllm: %s: %w", path, err)
	}
	hn := binary.LittleEndian.Uint64(l[:])
	if hn > maxHeader || int64(hn) > size-8 {
		return nil, 0, ckErr(path, "", 0, "header length %d exceeds the file (%d bytes) or the %d-byte limit", hn, size, maxHeader)
	}
	js := make([]byte, hn)
	if _, err := r.ReadAt(js, 8); err != nil && hn > 0 {
		return nil, 0, fmt.Errorf("maskllm: %s: %w", path, err)
	}
	var raw map[string]json.RawMessage
	if err := json.NewDecoder(bytes.NewReader(js)).Decode(&raw); err != nil {
		off := int64(8)
		var se *json.SyntaxError
		if errors.As(err, &se) {
			off += se.Offset
		}
		return nil, 0, ckErr(path, "", off, "header JSON: %v", err)
	}
	return raw, 8 + int64(hn), nil
}

func readCheckpoint(path string, r io.ReaderAt, size int64) (*Checkpoint, error) {
	raw, dataStart, err := readHeader(path, r, size)
	if err != nil {
		return nil, err
	}
	dataLen := size - dataStart
	c := &Checkpoint{Tensors: map[string][]float32{}}
	m, ok := raw["__metadata__"]
	if !ok || json.Unmarshal(m, &c.Meta) != nil {
		return nil, ckErr(path, "", 8, "no string-map __metadata__")
	}
	delete(raw, "__metadata__")
	if c.Meta["format"] != CheckpointFormat {
		return nil, ckErr(path, "", 8, "metadata format %q, want %q", c.Meta["format"], CheckpointFormat)
	}
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
	names := make([]string, 0, len(raw))
	for n := range raw {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		var e stEntry
		d := json.NewDecoder(bytes.NewReader(raw[n]))
		d.DisallowUnknownFields()
		if err := d.Decode(&e); err != nil {
			return nil, ckErr(path, n, 8, "header entry: %v", err)
		}
		if e.DType != "F32" {
			return nil, ckErr(path, n, 8, "dtype %s, want F32", e.DType)
		}
		if len(e.Shape) != 2 || e.Shape[1] != NumCandidates || e.Shape[0] < 0 {
			return nil, ckErr(path, n, 8, "shape %v, want [groups, %d]", e.Shape, NumCandidates)
		}
		a, b := e.DataOffsets[0], e.DataOffsets[1]
		if a < 0 || b < a || b > dataLen {
			return nil, ckErr(path, n, 8, "data offsets [%d, %d] outside the %d data bytes", a, b, dataLen)
		}
		if e.Shape[0] > (b-a)/4 || e.Shape[0]*NumCandidates*4 != b-a {
			return nil, ckErr(path, n, dataStart+a, "shape %v does not match %d data bytes", e.Shape, b-a)
		}
		buf := make([]byte, b-a) // bounded by the file size checked above
		if _, err := r.ReadAt(buf, dataStart+a); err != nil && len(buf) > 0 {
			return nil, fmt.Errorf("maskllm: %s: tensor %q: %w", path, n, err)
		}
		v := make([]float32, (b-a)/4)
		for i := range v {
			x := math.Float32frombits(binary.LittleEndian.Uint32(buf[4*i:]))
			if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
				return nil, ckErr(path, n, dataStart+a+int64(4*i), "value %v is not finite", x)
			}
			v[i] = x
		}
		c.Tensors[n] = v
	}
	return c, nil
}
