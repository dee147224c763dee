package pack

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/sparsify/sparsify/format"
	"github.com/sparsify/sparsify/mask"
)

// memSource is an in-memory format.Source for tests.
type memSource struct {
	infos []format.TensorInfo
	data  map[string][]byte
}

func (m *memSource) add(name string, dt format.DType, shape []int64, b []byte) {
	if m.data == nil {
		m.data = map[string][]byte{}
	}
	m.infos = append(m.infos, format.TensorInfo{Name: name, DType: dt, Shape: shape, Size: int64(len(b)), File: "mem.safetensors", Offset: 100})
	m.data[name] = b
}

func (m *memSource) Tensors() []format.TensorInfo { return m.infos }
func (m *memSource) Open(name string) (io.ReadCloser, error) {
	b, ok := m.data[name]
	if !ok {
		return nil, format.ErrNotFound
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}
func (m *memSource) Close() error { return nil }

func shapeBytes(rows, cols int) []byte {
	b := make([]byte, 16)
	le.PutUint64(b, uint64(rows))
	le.PutUint64(b[8:], uint64(cols))
	return b
}

func TestOpenExpanded(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	wq, _ := randMasked(rng, format.BF16, 64, 128, mask.Pattern24)
	wk, _ := randMasked(rng, format.F16, 32, 64, mask.Pattern24)
	norm := []byte{1, 2, 3, 4}
	src := &memSource{}
	src.add("model.norm.weight", format.F16, []int64{2}, norm)
	v, m, err := PackCutlass(format.BF16, 64, 128, wq)
	if err != nil {
		t.Fatal(err)
	}
	src.add("model.layers.0.self_attn.q_proj.shape", format.I64, []int64{2, 1}, shapeBytes(64, 128))
	src.add("model.layers.0.self_attn.q_proj.packed", format.BF16, []int64{64, 64}, v)
	src.add("model.layers.0.self_attn.q_proj.meta", format.I16, []int64{64, 8}, m)
	c, bm, err := PackBitmask(format.F16, 32, 64, wk)
	if err != nil {
		t.Fatal(err)
	}
	src.add("model.layers.0.self_attn.k_proj.shape", format.I64, []int64{2, 1}, shapeBytes(32, 64))
	src.add("model.layers.0.self_attn.k_proj.compressed", format.F16, []int64{32, 32}, c)
	src.add("model.layers.0.self_attn.k_proj.bitmask", format.U8, []int64{32, 8}, bm)

	x, err := OpenExpanded(src)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, ti := range x.Tensors() {
		names = append(names, ti.Name)
	}
	want := []string{"model.norm.weight", "model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.k_proj.weight"}
	if len(names) != len(want) {
		t.Fatalf("tensors %v, want %v", names, want)
	}
	for i := range want {
		if names[i] != want[i] {
			t.Fatalf("tensors %v, want %v", names, want)
		}
	}
	for name, wantB := range map[string][]byte{want[0]: norm, want[1]: wq, want[2]: wk} {
		got, ti, err := format.ReadAll(x, name)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, wantB) {
			t.Errorf("%s: expanded bytes differ", name)
		}
		if ti.Size != int64(len(wantB)) {
			t.Errorf("%s: size %d, want %d", name, ti.Size, len(wantB))
		}
	}
	if ti, _ := format.Lookup(x, want[1]); ti.DType != format.BF16 || ti.Shape[0] != 64 || ti.Shape[1] != 128 {
		t.Errorf("q_proj info %+v", ti)
	}
	if _, err := x.Open("model.layers.0.self_attn.q_proj.meta"); !errors.Is(err, format.ErrNotFound) {
		t.Errorf("hidden tensor: %v", err)
	}

	// A corrupt nibble surfaces on Open with the meta tensor named.
	m[5] = 0x55
	_, _, err = format.ReadAll(x, want[1])
	var fe *format.FormatError
	if !errors.As(err, &fe) || fe.Tensor != "model.layers.0.self_attn.q_proj.meta" {
		t.Errorf("corrupt meta: %v", err)
	}

	// Bad groups are refused at open.
	for name, mut := range map[string]func(s *memSource){
		"missing meta": func(s *memSource) { delete(s.data, "model.layers.0.self_attn.q_proj.meta"); s.infos = s.infos[:3] },
		"bad shape":    func(s *memSource) { s.data["model.layers.0.self_attn.q_proj.shape"] = shapeBytes(64, 256) },
		"neg shape":    func(s *memSource) { s.data["model.layers.0.self_attn.q_proj.shape"] = shapeBytes(-1, 128) },
		"weight too": func(s *memSource) {
			s.add("model.layers.0.self_attn.q_proj.weight", format.BF16, []int64{64, 128}, wq)
		},
	} {
		s := &memSource{}
		for _, ti := range src.infos {
			s.add(ti.Name, ti.DType, ti.Shape, src.data[ti.Name])
		}
		mut(s)
		if _, err := OpenExpanded(s); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
