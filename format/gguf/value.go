package gguf

import (
	"fmt"
	"strconv"
	"strings"
)

// ValueType is the GGUF metadata value type (gguf_type in llama.cpp).
type ValueType uint32

// Metadata value types, numbered as in the GGUF specification.
const (
	TypeUint8     ValueType = 0
	TypeInt8      ValueType = 1
	TypeUint16    ValueType = 2
	TypeInt16     ValueType = 3
	TypeUint32    ValueType = 4
	TypeInt32     ValueType = 5
	TypeFloat32   ValueType = 6
	TypeBool      ValueType = 7
	TypeString    ValueType = 8
	TypeArray     ValueType = 9
	TypeUint64    ValueType = 10
	TypeInt64     ValueType = 11
	TypeFloat64   ValueType = 12
	numValueTypes ValueType = 13
)

var valueTypeNames = [numValueTypes]string{
	"uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "bool",
	"string", "array", "uint64", "int64", "float64",
}

func (t ValueType) String() string {
	if t < numValueTypes {
		return valueTypeNames[t]
	}
	return fmt.Sprintf("ValueType(%d)", uint32(t))
}

// size is the encoded size of a fixed-size scalar type, 0 for string and array.
func (t ValueType) size() int64 {
	switch t {
	case TypeUint8, TypeInt8, TypeBool:
		return 1
	case TypeUint16, TypeInt16:
		return 2
	case TypeUint32, TypeInt32, TypeFloat32:
		return 4
	case TypeUint64, TypeInt64, TypeFloat64:
		return 8
	}
	return 0
}

// KV is one metadata entry, in the order the file stores it.
type KV struct {
	Key   string
	Value Value
}

// Value is a metadata value that keeps its GGUF type, so that writing it back
// reproduces the stored bytes.
//
// Data holds, by Type: uint8, int8, uint16, int16, uint32, int32, float32,
// bool, string, uint64, int64 or float64 for the scalar types; for TypeArray,
// Elem is the element type and Data is a slice of the matching Go type
// ([]uint8 … []float64, []bool, []string), or []Value when Elem is TypeArray
// (nested arrays, each element itself a Value of Type TypeArray).
type Value struct {
	Type ValueType
	Elem ValueType // element type when Type is TypeArray
	Data any
}

// ValueOf builds a Value from a Go value of one of the types Value documents:
// a scalar (uint8 … float64, bool, string), a slice of one ([]uint8, []string,
// ...), or []Value of arrays for a nested array.
func ValueOf(x any) (Value, error) {
	switch x := x.(type) {
	case uint8:
		return Value{Type: TypeUint8, Data: x}, nil
	case int8:
		return Value{Type: TypeInt8, Data: x}, nil
	case uint16:
		return Value{Type: TypeUint16, Data: x}, nil
	case int16:
		return Value{Type: TypeInt16, Data: x}, nil
	case uint32:
		return Value{Type: TypeUint32, Data: x}, nil
	case int32:
		return Value{Type: TypeInt32, Data: x}, nil
	case float32:
		return Value{Type: TypeFloat32, Data: x}, nil
	case bool:
		return Value{Type: TypeBool, Data: x}, nil
	case string:
		return Value{Type: TypeString, Data: x}, nil
	case uint64:
		return Value{Type: TypeUint64, Data: x}, nil
	case int64:
		return Value{Type: TypeInt64, Data: x}, nil
	case float64:
		return Value{Type: TypeFloat64, Data: x}, nil
	case []uint8:
		return Value{Type: TypeArray, Elem: TypeUint8, Data: x}, nil
	case []int8:
		return Value{Type: TypeArray, Elem: TypeInt8, Data: x}, nil
	case []uint16:
		return Value{Type: TypeArray, Elem: TypeUint16, Data: x}, nil
	case []int16:
		return Value{Type: TypeArray, Elem: TypeInt16, Data: x}, nil
	case []uint32:
		return Value{Type: TypeArray, Elem: TypeUint32, Data: x}, nil
	case []int32:
		return Value{Type: TypeArray, Elem: TypeInt32, Data: x}, nil
	case []float32:
		return Value{Type: TypeArray, Elem: TypeFloat32, Data: x}, nil
	case []bool:
		return Value{Type: TypeArray, Elem: TypeBool, Data: x}, nil
	case []string:
		return Value{Type: TypeArray, Elem: TypeString, Data: x}, nil
	case []uint64:
		return Value{Type: TypeArray, Elem: TypeUint64, Data: x}, nil
	case []int64:
		return Value{Type: TypeArray, Elem: TypeInt64, Data: x}, nil
	case []float64:
		return Value{Type: TypeArray, Elem: TypeFloat64, Data: x}, nil
	case []Value:
		v := Value{Type: TypeArray, Elem: TypeArray, Data: x}
		if err := v.validate(0); err != nil {
			return Value{}, err
		}
		return v, nil
	}
	return Value{}, fmt.Errorf("gguf: no metadata type for Go type %T", x)
}

// MustValue is ValueOf that panics on an unsupported Go type (a programming
// error); use it for literal metadata.
func MustValue(x any) Value {
	v, err := ValueOf(x)
	if err != nil {
		panic(err)
	}
	return v
}

// maxDepth bounds the nesting of arrays, read or written.
const maxDepth = 16

// validate checks that Data has the Go type that Type/Elem call for.
func (v Value) validate(depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("gguf: arrays nested deeper than %d", maxDepth)
	}
	if v.Type == TypeArray {
		if v.Elem == TypeArray {
			vs, ok := v.Data.([]Value)
			if !ok {
				return fmt.Errorf("gguf: array of arrays holds %T, want []gguf.Value", v.Data)
			}
			for i, e := range vs {
				if e.Type != TypeArray {
					return fmt.Errorf("gguf: element %d of an array of arrays has type %v", i, e.Type)
				}
				if err := e.validate(depth + 1); err != nil {
					return err
				}
			}
			return nil
		}
		want, err := ValueOf(zeroSlice(v.Elem))
		if err != nil || v.Elem >= numValueTypes {
			return fmt.Errorf("gguf: invalid array element type %v", v.Elem)
		}
		got, err := ValueOf(v.Data)
		if err != nil || got.Type != TypeArray || got.Elem != want.Elem {
			return fmt.Errorf("gguf: array of %v holds %T", v.Elem, v.Data)
		}
		return nil
	}
	if v.Type >= numValueTypes {
		return fmt.Errorf("gguf: invalid value type %v", v.Type)
	}
	got, err := ValueOf(v.Data)
	if err != nil || got.Type != v.Type {
		return fmt.Errorf("gguf: %v value holds %T", v.Type, v.Data)
	}
	return nil
}

func zeroSlice(t ValueType) any {
	switch t {
	case TypeUint8:
		return []uint8(nil)
	case TypeInt8:
		return []int8(nil)
	case TypeUint16:
		return []uint16(nil)
	case TypeInt16:
		return []int16(nil)
	case TypeUint32:
		return []uint32(nil)
	case TypeInt32:
		return []int32(nil)
	case TypeFloat32:
		return []float32(nil)
	case TypeBool:
		return []bool(nil)
	case TypeString:
		return []string(nil)
	case TypeUint64:
		return []uint64(nil)
	case TypeInt64:
		return []int64(nil)
	case TypeFloat64:
		return []float64(nil)
	case TypeArray:
		return []Value(nil)
	}
	return nil
}

// Len is the number of elements of an array value (0 for scalars).
func (v Value) Len() int {
	if v.Type != TypeArray {
		return 0
	}
	switch d := v.Data.(type) {
	case []uint8:
		return len(d)
	case []int8:
		return len(d)
	case []uint16:
		return len(d)
	case []int16:
		return len(d)
	case []uint32:
		return len(d)
	case []int32:
		return len(d)
	case []float32:
		return len(d)
	case []bool:
		return len(d)
	case []string:
		return len(d)
	case []uint64:
		return len(d)
	case []int64:
		return len(d)
	case []float64:
		return len(d)
	case []Value:
		return len(d)
	}
	return 0
}

// Uint returns an integer value of any integer type as uint64; ok is false
// for other types and negative values.
func (v Value) Uint() (uint64, bool) {
	switch d := v.Data.(type) {
	case uint8:
		return uint64(d), true
	case uint16:
		return uint64(d), true
	case uint32:
		return uint64(d), true
	case uint64:
		return d, true
	case int8:
		return uint64(d), d >= 0
	case int16:
		return uint64(d), d >= 0
	case int32:
		return uint64(d), d >= 0
	case int64:
		return uint64(d), d >= 0
	}
	return 0, false
}

// Int returns an integer value of any integer type as int64; ok is false for
// other types and for uint64 values above MaxInt64.
func (v Value) Int() (int64, bool) {
	switch d := v.Data.(type) {
	case uint64:
		return int64(d), d <= 1<<63-1
	case int8:
		return int64(d), true
	case int16:
		return int64(d), true
	case int32:
		return int64(d), true
	case int64:
		return d, true
	}
	u, ok := v.Uint()
	return int64(u), ok
}

// Float returns a float32 or float64 value, or an integer converted to float64.
func (v Value) Float() (float64, bool) {
	switch d := v.Data.(type) {
	case float32:
		return float64(d), true
	case float64:
		return d, true
	}
	if i, ok := v.Int(); ok {
		return float64(i), true
	}
	if u, ok := v.Uint(); ok {
		return float64(u), true
	}
	return 0, false
}

// String formats the value for display; arrays longer than 8 elements are
// abbreviated.
func (v Value) String() string {
	if v.Type != TypeArray {
		switch d := v.Data.(type) {
		case string:
			return strconv.Quote(d)
		case float32:
			return strconv.FormatFloat(float64(d), 'g', -1, 32)
		}
		return fmt.Sprint(v.Data)
	}
	n := v.Len()
	var b strings.Builder
	b.WriteString("[")
	for i := 0; i < n && i < 8; i++ {
		if i > 0 {
			b.WriteString(" ")
		}
		b.WriteString(v.index(i).String())
	}
	if n > 8 {
		fmt.Fprintf(&b, " … (%d %v)", n, v.Elem)
	}
	b.WriteString("]")
	return b.String()
}

// index returns element i of an array as a Value.
func (v Value) index(i int) Value {
	switch d := v.Data.(type) {
	case []uint8:
		return Value{Type: TypeUint8, Data: d[i]}
	case []int8:
		return Value{Type: TypeInt8, Data: d[i]}
	case []uint16:
		return Value{Type: TypeUint16, Data: d[i]}
	case []int16:
		return Value{Type: TypeInt16, Data: d[i]}
	case []uint32:
		return Value{Type: TypeUint32, Data: d[i]}
	case []int32:
		return Value{Type: TypeInt32, Data: d[i]}
	case []float32:
		return Value{Type: TypeFloat32, Data: d[i]}
	case []bool:
		return Value{Type: TypeBool, Data: d[i]}
	case []string:
		return Value{Type: TypeString, Data: d[i]}
	case []uint64:
		return Value{Type: TypeUint64, Data: d[i]}
	case []int64:
		return Value{Type: TypeInt64, Data: d[i]}
	case []float64:
		return Value{Type: TypeFloat64, Data: d[i]}
	case []Value:
		return d[i]
	}
	return Value{}
}
