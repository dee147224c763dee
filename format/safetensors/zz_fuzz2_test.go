package safetensors

import "testing"

func FuzzZZTrivial(f *testing.F) {
	f.Add([]byte(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		parseHeader("x", b, 8)
	})
}
