package pack

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"sort"
	"strings"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/sparsify/sparsify/format"
	"github.com/sparsify/sparsify/format/gguf"
	"github.com/sparsify/sparsify/format/llama"
)

// Report is what Inspect finds in a checkpoint.
type Report struct {
	Path     string          `json:"path"`
	Format   string          `json:"format"` // safetensors, gguf
	Version  uint32          `json:"gguf_version,omitempty"`
	Arch     *llama.Config   `json:"architecture,omitempty"`
	Metadata []KVSummary     `json:"metadata,omitempty"`
	Sparse   Layout          `json:"sparse_layout,omitempty"` // layout of packed weights, "" if none
	Tensors  []TensorSummary `json:"tensors"`
	Bytes    int64           `json:"bytes"`  // tensor bytes
	Params   int64           `json:"params"` // elements (packed weights count their dense size)
}

// KVSummary is one metadata entry with long values elided.
type KVSummary struct {
	Key   string `json:"key"`
	Type  string `json:"type"`
	Value string `json:"value"`
}

// TensorSummary is one stored tensor.
type TensorSummary struct {
	Name  string  `json:"name"`
	DType string  `json:"dtype"`
	Shape []int64 `json:"shape"`
	Bytes int64   `json:"bytes"`
	// Zeros is the fraction of elements exactly zero (after dequantization;
	// -0 counts as zero). For packed values it is that of the stored values.
	Zeros float64 `json:"zeros"`
	// Sparse24 is "yes"/"no" for 2-D tensors whose rows divide into groups of
	// 4 (at most 2 nonzeros in every group), "by construction" for packed
	// weights, "" where it does not apply.
	Sparse24 string `json:"sparse24,omitempty"`
	// Packed names the layout and weight a packed tensor belongs to.
	Packed string `json:"packed,omitempty"`
	// Detail locates the first group with more than 2 nonzeros.
	Detail string `json:"detail,omitempty"`
}

// InspectOptions tune Inspect.
type InspectOptions struct {
	Jobs int // tensors scanned at once (0: number of CPUs)
	// Progress, if set, is called after each tensor (serialized).
	Progress func(done, total int)
}

// maxChunk bounds the bytes Inspect holds per tensor being scanned.
const maxChunk = 4 << 20

// Inspect reads every tensor of the checkpoint at path once, streaming, and
// reports its metadata, architecture and per-tensor statistics. Packed
// weights are shown as stored (not expanded).
func Inspect(ctx context.Context, path string, opts InspectOptions) (*Report, error) {
	ck, err := OpenCheckpoint(path)
	if err != nil {
		return nil, err
	}
	defer ck.Close()
	r := &Report{Path: path, Format: ck.Kind, Sparse: ck.Sparse}
	if ck.HasCfg {
		a := ck.Arch
		r.Arch = &a
	}
	src := ck.Source
	if u, ok := src.(interface{ Unwrap() format.Source }); ok {
		src = u.Unwrap()
	}
	if ck.GGUF != nil {
		r.Version = ck.GGUF.Version()
		for _, kv := range ck.GGUF.KV() {
			t := kv.Value.Type.String()
			if kv.Value.Type == gguf.TypeArray {
				t = fmt.Sprintf("array[%v, %d]", kv.Value.Elem, kv.Value.Len())
			}
			v := kv.Value.String()
			if len(v) > 200 {
				v = v[:200] + "…"
			}
			r.Metadata = append(r.Metadata, KVSummary{Key: kv.Key, Type: t, Value: v})
		}
	} else if m, ok := src.(interface{ Metadata() map[string]string }); ok {
		keys := make([]string, 0)
		md := m.Metadata()
		for k := range md {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			r.Metadata = append(r.Metadata, KVSummary{Key: k, Type: "string", Value: md[k]})
		}
	}
	packedOf := map[string]string{}
	denseParams := map[string]int64{}
	if groups, err := FindPacked(src.Tensors()); err == nil {
		for _, g := range groups {
			for _, ti := range []format.TensorInfo{g.Values, g.Meta, g.Shape} {
				packedOf[ti.Name] = fmt.Sprintf("%s %s", g.Layout, g.Weight())
			}
			denseParams[g.Values.Name] = 2 * g.Values.NumElements()
		}
	}
	ts := src.Tensors()
	r.Tensors = make([]TensorSummary, len(ts))
	jobs := opts.Jobs
	if jobs <= 0 {
		jobs = runtime.NumCPU()
	}
	for _, f := range ck.Files {
		if strings.HasSuffix(f, ".zst") {
			jobs = 1 // zstd shards decode forward only
		}
	}
	raw := newRawFiles(src)
	defer raw.close()
	eg, ctx := errgroup.WithContext(ctx)
	eg.SetLimit(jobs)
	var mu sync.Mutex
	done := 0
	for i, ti := range ts {
		r.Bytes += ti.Size
		if n, ok := denseParams[ti.Name]; ok {
			r.Params += n
		} else if _, packed := packedOf[ti.Name]; !packed {
			r.Params += ti.NumElements()
		}
		eg.Go(func() error {
			if err := ctx.Err(); err != nil {
				return err
			}
			s, err := scanTensor(raw, ti)
			if err != nil {
				return err
			}
			if p, ok := packedOf[ti.Name]; ok {
				s.Packed, s.Sparse24, s.Detail = p, "by construction", ""
			}
			r.Tensors[i] = s
			if opts.Progress != nil {
				mu.Lock()
				done++
				opts.Progress(done, len(ts))
				mu.Unlock()
			}
			return nil
		})
	}
	if err := eg.Wait(); err != nil {
		return nil, err
	}
	return r, nil
}

// scanTensor streams one tensor: zero fraction and the 2:4 check.
func scanTensor(raw *rawFiles, ti format.TensorInfo) (TensorSummary, error) {
	s := TensorSummary{Name: ti.Name, DType: ti.DType.String(), Shape: ti.Shape, Bytes: ti.Size}
	tr, ok := ti.DType.Trait()
	if !ok || !tr.Float {
		return s, nil
	}
	n := ti.NumElements()
	if n == 0 {
		return s, nil
	}
	cols := int64(0)
	check24 := false
	if len(ti.Shape) == 2 && ti.Shape[1]%4 == 0 {
		cols, check24 = ti.Shape[1], true
	}
	// chunk: whole blocks, a multiple of 4 elements
	unitElems := tr.BlockSize
	for unitElems%4 != 0 {
		unitElems *= 2
	}
	if unitElems > n {
		unitElems = n
	}
	unitBytes := unitElems / tr.BlockSize * tr.TypeSize
	per := max(int64(1), maxChunk/max(unitBytes, 1))
	chunkBytes := per * unitBytes
	rc, err := raw.open(ti)
	if err != nil {
		return s, err
	}
	defer rc.Close()
	buf := make([]byte, min(chunkBytes, ti.Size))
	vals := make([]float32, int64(len(buf))/tr.TypeSize*tr.BlockSize)
	var zeros, pos int64
	bad := false
	for pos < n {
		want := min(int64(len(buf)), ti.Size-pos/tr.BlockSize*tr.TypeSize)
		if _, err := io.ReadFull(rc, buf[:want]); err != nil {
			return s, &format.FormatError{File: ti.File, Tensor: ti.Name, Offset: ti.Offset + pos/tr.BlockSize*tr.TypeSize, Msg: fmt.Sprintf("reading: %v", err)}
		}
		m := want / tr.TypeSize * tr.BlockSize
		v := vals[:m]
		if err := format.ToFloat32(ti.DType, buf[:want], v); err != nil {
			return s, fmt.Errorf("tensor %q: %w", ti.Name, err)
		}
		for g := int64(0); g < m; g += 4 {
			nz := 0
			for k := g; k < min(g+4, m); k++ {
				if v[k] == 0 {
					zeros++
				} else {
					nz++
				}
			}
			if check24 && nz > 2 && !bad {
				bad = true
				e := pos + g
				s.Detail = fmt.Sprintf("row %d, group %d has %d nonzeros", e/cols, (e%cols)/4, nz)
			}
		}
		pos += m
	}
	s.Zeros = float64(zeros) / float64(n)
	if check24 {
		s.Sparse24 = "yes"
		if bad {
			s.Sparse24 = "no"
		}
	}
	return s, nil
}
