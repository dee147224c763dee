//go:build !(goexperiment.simd && amd64)

package model

// gExpVec is the vector exp of the training path; without the SIMD
// experiment it does nothing and the scalar loop does the work.
func gExpVec(dst, src []float32, scale, sub float32) (int, float32) { return 0, 0 }
