package maskllm

import (
	"math/rand/v2"
	"testing"

	"github.com/sparsify/sparsify/model"
)

// BenchmarkMaskLayer measures the mask layer's own work per step (Gumbel
// sampling, soft mask, backward to the logits, AdamW) on a 1024×1024 weight,
// i.e. everything of a step except the model's forward and backward:
//
//	GOEXPERIMENT=simd go test ./mask/maskllm -run '^$' -bench MaskLayer -benchtime 10x
func BenchmarkMaskLayer(b *testing.B) {
	l := &model.Linear{Name: "w", Out: 1024, In: 1024, W: make([]float32, 1<<20)}
	r := rand.New(rand.NewPCG(1, 1))
	for i := range l.W {
		l.W[i] = float32(r.NormFloat64())
	}
	dSoft := make([]float32, len(l.W))
	for i := range dSoft {
		dSoft[i] = float32(r.NormFloat64() * 1e-3)
	}
	L := newLayer(l)
	L.initRandom(1, 0, 0.01)
	o := DefaultOptions()
	b.SetBytes(int64(len(l.W)) * 4)
	b.ResetTimer()
	for i := range b.N {
		L.sample(1, i, 0, 100, 4)
		_, sq := L.backward(dSoft, 1e-5, 100, 4)
		L.adamW(&o, 5e-4, 1/(1+sq), 0.1, 0.05)
	}
	b.ReportMetric(float64(b.N)*float64(len(l.W))/b.Elapsed().Seconds(), "weights/s")
}
