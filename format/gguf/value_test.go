package gguf_test

import (
	"math"
	"strings"
	"testing"

	"github.com/sparsify/sparsify/format/gguf"
)

func TestValueOf(t *testing.T) {
	for _, x := range []any{uint8(1), int8(1), uint16(1), int16(1), uint32(1), int32(1), float32(1), true, "s",
		uint64(1), int64(1), 1.0, []uint8{1}, []int8{1}, []uint16{1}, []int16{1}, []uint32{1}, []int32{1},
		[]float32{1}, []bool{true}, []string{"a"}, []uint64{1}, []int64{1}, []float64{1},
		[]gguf.Value{gguf.MustValue([]int32{1})}} {
		v, err := gguf.ValueOf(x)
		if err != nil {
			t.Fatalf("%T: %v", x, err)
		}
		if (v.Type == gguf.TypeArray) != strings.HasPrefix(fmtType(x), "[]") {
			t.Errorf("%T: type %v", x, v.Type)
		}
		if v.Type == gguf.TypeArray && v.Len() != 1 {
			t.Errorf("%T: Len %d", x, v.Len())
		}
	}
	for _, x := range []any{int(1), uint(1), []int{1}, nil, map[string]int{}, []gguf.Value{gguf.MustValue(1.0)}} {
		if _, err := gguf.ValueOf(x); err == nil {
			t.Errorf("%T accepted", x)
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("MustValue(int) did not panic")
		}
	}()
	gguf.MustValue(3)
}

func fmtType(x any) string {
	switch x.(type) {
	case []uint8, []int8, []uint16, []int16, []uint32, []int32, []float32, []bool, []string, []uint64, []int64, []float64, []gguf.Value:
		return "[]"
	}
	return ""
}

func TestValueAccessors(t *testing.T) {
	m := gguf.MustValue
	if u, ok := m(uint32(7)).Uint(); !ok || u != 7 {
		t.Error("Uint of uint32")
	}
	if _, ok := m(int32(-1)).Uint(); ok {
		t.Error("Uint of a negative int32 succeeded")
	}
	if i, ok := m(int8(-3)).Int(); !ok || i != -3 {
		t.Error("Int of int8")
	}
	if _, ok := m(uint64(math.MaxUint64)).Int(); ok {
		t.Error("Int of MaxUint64 succeeded")
	}
	if f, ok := m(float32(0.5)).Float(); !ok || f != 0.5 {
		t.Error("Float of float32")
	}
	if f, ok := m(uint16(9)).Float(); !ok || f != 9 {
		t.Error("Float of uint16")
	}
	if _, ok := m("x").Float(); ok {
		t.Error("Float of a string succeeded")
	}
	for v, want := range map[*gguf.Value]string{
		ptr(m("a\"b")):                    `"a\"b"`,
		ptr(m(float32(1e-5))):             "1e-05",
		ptr(m([]int32{1, 2})):             "[1 2]",
		ptr(m(make([]uint8, 20))):         "[0 0 0 0 0 0 0 0 … (20 uint8)]",
		ptr(m([]gguf.Value{m([]bool{})})): "[[]]",
	} {
		if got := v.String(); got != want {
			t.Errorf("String() = %q, want %q", got, want)
		}
	}
	if gguf.TypeFloat64.String() != "float64" || gguf.ValueType(99).String() != "ValueType(99)" {
		t.Error("ValueType.String")
	}
}

func ptr(v gguf.Value) *gguf.Value { return &v }

func TestGGMLType(t *testing.T) {
	for _, c := range []struct {
		typ  gguf.GGMLType
		name string
		ok   bool
	}{{gguf.GGMLF32, "F32", true}, {gguf.GGMLQ6_K, "Q6_K", true}, {gguf.GGMLBF16, "BF16", true},
		{16, "IQ2_XXS", false}, {4, "Q4_2", false}, {200, "GGMLType(200)", false}} {
		if c.typ.String() != c.name {
			t.Errorf("%d: %q", c.typ, c.typ.String())
		}
		dt, ok := c.typ.DType()
		if ok != c.ok || (ok && dt.String() != c.name) {
			t.Errorf("%v: DType %v %v", c.typ, dt, ok)
		}
		if ok {
			if back, ok := gguf.TypeOf(dt); !ok || back != c.typ {
				t.Errorf("TypeOf(%v) = %v", dt, back)
			}
		}
	}
}
