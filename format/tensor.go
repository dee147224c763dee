package format

import "io"

// Tensor is one tensor to write: its description and a producer of its bytes.
// Writers compute every offset from Size first (header-first writing), then
// call WriteTo, possibly concurrently for different tensors.
type Tensor struct {
	Name  string
	DType DType
	Shape []int64 // row-major, outermost first
	Size  int64   // exact number of bytes WriteTo writes
	// WriteTo writes exactly Size bytes of stored data to w.
	WriteTo func(w io.Writer) (int64, error)
}

// Passthrough returns a Tensor that copies one tensor of src byte for byte.
func Passthrough(src Source, ti TensorInfo) Tensor {
	return Tensor{
		Name: ti.Name, DType: ti.DType, Shape: ti.Shape, Size: ti.Size,
		WriteTo: func(w io.Writer) (int64, error) {
			rc, err := src.Open(ti.Name)
			if err != nil {
				return 0, err
			}
			defer rc.Close()
			return io.CopyN(w, rc, ti.Size)
		},
	}
}
