package llama

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"

	"github.com/sparsify/sparsify/format/gguf"
)

// JSON views of GGUF metadata values.
//
// plain: what tokenizer.gguf.json holds — the value itself, arrays as JSON
// arrays. Non-finite floats are written as the strings "NaN", "+Inf", "-Inf".
// typed: {"type": "uint32", "value": 7}; arrays add "elem"; nested arrays hold
// typed elements. Used by gguf-metadata.json so that types survive.

// plainJSON converts a metadata value to a JSON-encodable Go value.
func plainJSON(v gguf.Value) any {
	if v.Type == gguf.TypeArray {
		if vs, ok := v.Data.([]gguf.Value); ok {
			out := make([]any, len(vs))
			for i, e := range vs {
				out[i] = plainJSON(e)
			}
			return out
		}
		switch d := v.Data.(type) {
		case []float32:
			out := make([]any, len(d))
			for i, f := range d {
				out[i] = jsonFloat(float64(f), 32)
			}
			return out
		case []float64:
			out := make([]any, len(d))
			for i, f := range d {
				out[i] = jsonFloat(f, 64)
			}
			return out
		}
		return v.Data
	}
	switch d := v.Data.(type) {
	case float32:
		return jsonFloat(float64(d), 32)
	case float64:
		return jsonFloat(d, 64)
	}
	return v.Data
}

func jsonFloat(f float64, bits int) any {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "+Inf"
	case math.IsInf(f, -1):
		return "-Inf"
	}
	// json.Number keeps float32 values short and exact.
	return json.Number(strconv.FormatFloat(f, 'g', -1, bits))
}

// typedJSON is the typed form of a value.
type typedJSON struct {
	Type  string `json:"type"`
	Elem  string `json:"elem,omitempty"`
	Value any    `json:"value,omitempty"`
	// In names the side file that holds the value (tokenizer.gguf.json).
	In string `json:"in,omitempty"`
}

var typeByName = func() map[string]gguf.ValueType {
	m := map[string]gguf.ValueType{}
	for t := gguf.TypeUint8; t <= gguf.TypeFloat64; t++ {
		m[t.String()] = t
	}
	return m
}()

func parseType(s string) (gguf.ValueType, error) {
	t, ok := typeByName[s]
	if !ok {
		return 0, fmt.Errorf("llama: unknown GGUF value type %q", s)
	}
	return t, nil
}

func toTyped(v gguf.Value) typedJSON {
	t := typedJSON{Type: v.Type.String()}
	if v.Type == gguf.TypeArray {
		t.Elem = v.Elem.String()
		if vs, ok := v.Data.([]gguf.Value); ok {
			out := make([]typedJSON, len(vs))
			for i, e := range vs {
				out[i] = toTyped(e)
			}
			t.Value = out
			return t
		}
	}
	t.Value = plainJSON(v)
	if t.Value == nil {
		t.Value = []any{}
	}
	return t
}

// decodeJSON unmarshals with numbers kept as json.Number.
func decodeJSON(data []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	return d.Decode(v)
}

// fromTyped rebuilds a Value from its typed JSON (raw = the decoded object).
func fromTyped(raw map[string]any) (gguf.Value, error) {
	ts, _ := raw["type"].(string)
	t, err := parseType(ts)
	if err != nil {
		return gguf.Value{}, err
	}
	if t != gguf.TypeArray {
		return convertScalar(raw["value"], t)
	}
	es, _ := raw["elem"].(string)
	e, err := parseType(es)
	if err != nil {
		return gguf.Value{}, err
	}
	if e != gguf.TypeArray {
		return convertValue(raw["value"], t, e)
	}
	items, ok := raw["value"].([]any)
	if !ok && raw["value"] != nil {
		return gguf.Value{}, fmt.Errorf("llama: array of arrays holds %T", raw["value"])
	}
	vs := make([]gguf.Value, len(items))
	for i, it := range items {
		m, ok := it.(map[string]any)
		if !ok {
			return gguf.Value{}, fmt.Errorf("llama: nested array element %d is %T", i, it)
		}
		if vs[i], err = fromTyped(m); err != nil {
			return gguf.Value{}, err
		}
	}
	return gguf.ValueOf(vs)
}

// convertValue turns a plain JSON value into a Value of type t (elem e for arrays).
func convertValue(x any, t, e gguf.ValueType) (gguf.Value, error) {
	if t != gguf.TypeArray {
		return convertScalar(x, t)
	}
	items, ok := x.([]any)
	if !ok && x != nil {
		return gguf.Value{}, fmt.Errorf("llama: want an array of %v, got %T", e, x)
	}
	if e == gguf.TypeArray {
		vs := make([]gguf.Value, len(items))
		for i, it := range items {
			v, err := inferValue(it)
			if err != nil {
				return gguf.Value{}, err
			}
			vs[i] = v
		}
		return gguf.ValueOf(vs)
	}
	n := len(items)
	var out any
	switch e {
	case gguf.TypeUint8:
		out = make([]uint8, n)
	case gguf.TypeInt8:
		out = make([]int8, n)
	case gguf.TypeUint16:
		out = make([]uint16, n)
	case gguf.TypeInt16:
		out = make([]int16, n)
	case gguf.TypeUint32:
		out = make([]uint32, n)
	case gguf.TypeInt32:
		out = make([]int32, n)
	case gguf.TypeFloat32:
		out = make([]float32, n)
	case gguf.TypeBool:
		out = make([]bool, n)
	case gguf.TypeString:
		out = make([]string, n)
	case gguf.TypeUint64:
		out = make([]uint64, n)
	case gguf.TypeInt64:
		out = make([]int64, n)
	case gguf.TypeFloat64:
		out = make([]float64, n)
	default:
		return gguf.Value{}, fmt.Errorf("llama: array element type %v", e)
	}
	for i, it := range items {
		s, err := convertScalar(it, e)
		if err != nil {
			return gguf.Value{}, fmt.Errorf("element %d: %w", i, err)
		}
		switch o := out.(type) {
		case []uint8:
			o[i] = s.Data.(uint8)
		case []int8:
			o[i] = s.Data.(int8)
		case []uint16:
			o[i] = s.Data.(uint16)
		case []int16:
			o[i] = s.Data.(int16)
		case []uint32:
			o[i] = s.Data.(uint32)
		case []int32:
			o[i] = s.Data.(int32)
		case []float32:
			o[i] = s.Data.(float32)
		case []bool:
			o[i] = s.Data.(bool)
		case []string:
			o[i] = s.Data.(string)
		case []uint64:
			o[i] = s.Data.(uint64)
		case []int64:
			o[i] = s.Data.(int64)
		case []float64:
			o[i] = s.Data.(float64)
		}
	}
	return gguf.ValueOf(out)
}

func convertScalar(x any, t gguf.ValueType) (gguf.Value, error) {
	bad := func() (gguf.Value, error) {
		return gguf.Value{}, fmt.Errorf("llama: %v value from JSON %T %v", t, x, x)
	}
	switch t {
	case gguf.TypeString:
		s, ok := x.(string)
		if !ok {
			return bad()
		}
		return gguf.ValueOf(s)
	case gguf.TypeBool:
		b, ok := x.(bool)
		if !ok {
			return bad()
		}
		return gguf.ValueOf(b)
	case gguf.TypeFloat32, gguf.TypeFloat64:
		var f float64
		switch v := x.(type) {
		case json.Number:
			var err error
			if f, err = strconv.ParseFloat(string(v), 64); err != nil {
				return bad()
			}
		case float64:
			f = v
		case string:
			switch v {
			case "NaN":
				f = math.NaN()
			case "+Inf", "Inf":
				f = math.Inf(1)
			case "-Inf":
				f = math.Inf(-1)
			default:
				return bad()
			}
		default:
			return bad()
		}
		if t == gguf.TypeFloat32 {
			return gguf.ValueOf(float32(f))
		}
		return gguf.ValueOf(f)
	}
	var s string
	switch v := x.(type) {
	case json.Number:
		s = string(v)
	case float64:
		s = strconv.FormatFloat(v, 'f', -1, 64)
	default:
		return bad()
	}
	switch t {
	case gguf.TypeUint8, gguf.TypeUint16, gguf.TypeUint32, gguf.TypeUint64:
		bits := map[gguf.ValueType]int{gguf.TypeUint8: 8, gguf.TypeUint16: 16, gguf.TypeUint32: 32, gguf.TypeUint64: 64}[t]
		u, err := strconv.ParseUint(s, 10, bits)
		if err != nil {
			return bad()
		}
		switch t {
		case gguf.TypeUint8:
			return gguf.ValueOf(uint8(u))
		case gguf.TypeUint16:
			return gguf.ValueOf(uint16(u))
		case gguf.TypeUint32:
			return gguf.ValueOf(uint32(u))
		}
		return gguf.ValueOf(u)
	case gguf.TypeInt8, gguf.TypeInt16, gguf.TypeInt32, gguf.TypeInt64:
		bits := map[gguf.ValueType]int{gguf.TypeInt8: 8, gguf.TypeInt16: 16, gguf.TypeInt32: 32, gguf.TypeInt64: 64}[t]
		i, err := strconv.ParseInt(s, 10, bits)
		if err != nil {
			return bad()
		}
		switch t {
		case gguf.TypeInt8:
			return gguf.ValueOf(int8(i))
		case gguf.TypeInt16:
			return gguf.ValueOf(int16(i))
		case gguf.TypeInt32:
			return gguf.ValueOf(int32(i))
		}
		return gguf.ValueOf(i)
	}
	return bad()
}

// inferValue picks a GGUF type for a plain JSON value whose key has no known
// type: strings, bools; integers as int32 (uint32 if above int32), other
// numbers as float32; arrays by their first element.
func inferValue(x any) (gguf.Value, error) {
	t, e := inferType(x)
	return convertValue(x, t, e)
}

func inferType(x any) (t, e gguf.ValueType) {
	switch v := x.(type) {
	case string:
		return gguf.TypeString, 0
	case bool:
		return gguf.TypeBool, 0
	case json.Number:
		if i, err := strconv.ParseInt(string(v), 10, 64); err == nil {
			switch {
			case i >= math.MinInt32 && i <= math.MaxInt32:
				return gguf.TypeInt32, 0
			case i >= 0 && i <= math.MaxUint32:
				return gguf.TypeUint32, 0
			}
			return gguf.TypeInt64, 0
		}
		return gguf.TypeFloat32, 0
	case []any:
		if len(v) == 0 {
			return gguf.TypeArray, gguf.TypeString
		}
		et, _ := inferType(v[0])
		if et == gguf.TypeInt32 || et == gguf.TypeUint32 {
			// a later float makes the array float
			for _, it := range v {
				if n, ok := it.(json.Number); ok {
					if _, err := strconv.ParseInt(string(n), 10, 64); err != nil {
						et = gguf.TypeFloat32
						break
					}
				}
			}
		}
		return gguf.TypeArray, et
	}
	return gguf.TypeString, 0
}
