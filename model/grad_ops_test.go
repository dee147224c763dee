package model

import (
	"math"
	"math/rand/v2"
	"testing"
)

// Gradient checks of each op's backward against central finite differences,
// in float64 on tiny random shapes. Each op is checked through the scalar
// L = Σ op(x) ⊙ R for a fixed random R.

const (
	fdStep = 1e-5
	// fdTol bounds |analytic − numeric| ≤ fdAbs + fdTol·|numeric|.
	fdTol = 1e-6
	fdAbs = 1e-8
)

func gRandVec(rng *rand.Rand, n int, scale float64) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = rng.NormFloat64() * scale
	}
	return v
}

func gDot64(a, b []float64) float64 {
	var s float64
	for i := range a {
		s += a[i] * b[i]
	}
	return s
}

// gCheckFD compares grad with central differences of f over every element of x.
func gCheckFD(t *testing.T, what string, x, grad []float64, f func() float64) {
	t.Helper()
	worst := 0.0
	for i := range x {
		old := x[i]
		x[i] = old + fdStep
		fp := f()
		x[i] = old - fdStep
		fm := f()
		x[i] = old
		num := (fp - fm) / (2 * fdStep)
		diff := math.Abs(grad[i] - num)
		if diff > fdAbs+fdTol*math.Abs(num) {
			t.Fatalf("%s[%d]: analytic %.12g, numeric %.12g (diff %.3g)", what, i, grad[i], num, diff)
		}
		worst = max(worst, diff)
	}
	t.Logf("%s: %d elements, worst |diff| %.3g", what, len(x), worst)
}

func TestGradRMSNorm(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	rows, dim := 3, 8
	x := gRandVec(rng, rows*dim, 1)
	w := gRandVec(rng, dim, 1)
	R := gRandVec(rng, rows*dim, 1)
	y := make([]float64, rows*dim)
	r := make([]float64, rows)
	f := func() float64 {
		gRMSNorm(y, r, x, w, rows, dim, 1e-5)
		return gDot64(y, R)
	}
	f()
	dx := make([]float64, rows*dim)
	dw := make([]float64, dim)
	gRMSNormBack(dx, dw, R, x, r, w, rows, dim)
	gCheckFD(t, "dx", x, dx, f)
	gCheckFD(t, "dw", w, dw, f)
}

func TestGradRope(t *testing.T) {
	for _, inter := range []bool{true, false} {
		rng := rand.New(rand.NewPCG(3, 4))
		B, T, heads, hd := 2, 5, 3, 6
		rope := newGRope[float64](hd, T, 10000, inter)
		x := gRandVec(rng, B*T*heads*hd, 1)
		R := gRandVec(rng, len(x), 1)
		y := make([]float64, len(x))
		f := func() float64 {
			copy(y, x)
			rope.apply(y, B, T, heads, 1)
			return gDot64(y, R)
		}
		dx := append([]float64(nil), R...)
		rope.apply(dx, B, T, heads, -1)
		gCheckFD(t, "rope dx", x, dx, f)
	}
}

// TestGradRopeMatchesForward checks the training path's rotation against the
// forward model's Rope, in both conventions.
func TestGradRopeMatchesForward(t *testing.T) {
	for _, inter := range []bool{true, false} {
		rng := rand.New(rand.NewPCG(5, 6))
		B, T, heads, hd := 2, 7, 2, 8
		x := make([]float32, B*T*heads*hd)
		for i := range x {
			x[i] = float32(rng.NormFloat64())
		}
		a := append([]float32(nil), x...)
		b := append([]float32(nil), x...)
		NewRope(hd, T, 10000, inter).Apply(a, B, T, heads, 0)
		newGRope[float32](hd, T, 10000, inter).apply(b, B, T, heads, 1)
		for i := range a {
			if a[i] != b[i] {
				t.Fatalf("interleaved=%v: element %d: forward %g, training path %g", inter, i, a[i], b[i])
			}
		}
	}
}

func TestGradSwiGLU(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	n := 20
	g := gRandVec(rng, n, 2)
	u := gRandVec(rng, n, 1)
	R := gRandVec(rng, n, 1)
	h := make([]float64, n)
	f := func() float64 { gSwiGLU(h, g, u); return gDot64(h, R) }
	dg := make([]float64, n)
	du := make([]float64, n)
	gSwiGLUBack(dg, du, R, g, u)
	gCheckFD(t, "dg", g, dg, f)
	gCheckFD(t, "du", u, du, f)
}

func TestGradAttention(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	B, T, heads, kv, hd := 2, 5, 4, 2, 4
	q := gRandVec(rng, B*T*heads*hd, 1)
	k := gRandVec(rng, B*T*kv*hd, 1)
	v := gRandVec(rng, B*T*kv*hd, 1)
	R := gRandVec(rng, len(q), 1)
	out := make([]float64, len(q))
	probs := make([]float64, B*heads*T*T)
	f := func() float64 {
		gAttention(out, probs, q, k, v, B, T, heads, kv, hd, attnScratches[float64](nil, T, hd))
		return gDot64(out, R)
	}
	f()
	dq := make([]float64, len(q))
	dk := make([]float64, len(k))
	dv := make([]float64, len(v))
	gAttentionBack(dq, dk, dv, R, probs, q, k, v, B, T, heads, kv, hd, attnScratches[float64](nil, T, hd))
	gCheckFD(t, "dq", q, dq, f)
	gCheckFD(t, "dk", k, dk, f)
	gCheckFD(t, "dv", v, dv, f)

	// causal: the output at position 0 depends on nothing later.
	f()
	o0 := append([]float64(nil), out[:heads*hd]...)
	k[(T-1)*kv*hd] += 1
	v[(T-1)*kv*hd] += 1
	f()
	for i, x := range o0 {
		if out[i] != x {
			t.Fatalf("position 0 output changed when a later key changed")
		}
	}
}

// TestGradAttentionMatchesForward checks the training path's attention
// against the forward model's Attention in float32.
func TestGradAttentionMatchesForward(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	B, T, heads, kv, hd := 2, 9, 4, 2, 8
	mk := func(n int) []float32 {
		s := make([]float32, n)
		for i := range s {
			s[i] = float32(rng.NormFloat64())
		}
		return s
	}
	q, k, v := mk(B*T*heads*hd), mk(B*T*kv*hd), mk(B*T*kv*hd)
	a := make([]float32, len(q))
	b := make([]float32, len(q))
	Attention(a, q, k, v, B, T, heads, kv, hd, nil)
	gAttention(b, make([]float32, B*heads*T*T), q, k, v, B, T, heads, kv, hd, attnScratches[float32](nil, T, hd))
	for i := range a {
		if math.Abs(float64(a[i]-b[i])) > 1e-5 {
			t.Fatalf("element %d: forward %g, training path %g", i, a[i], b[i])
		}
	}
}

func TestGradCrossEntropy(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	rows, V := 5, 7
	x := gRandVec(rng, rows*V, 2)
	tg := make([]int32, rows)
	for i := range tg {
		tg[i] = int32(rng.IntN(V))
	}
	buf := make([]float64, len(x))
	scale := 1 / float64(rows)
	f := func() float64 {
		copy(buf, x)
		return gCrossEntropy(buf, tg, rows, V, scale) * scale
	}
	f()
	grad := append([]float64(nil), buf...)
	gCheckFD(t, "dlogits", x, grad, f)
}

// TestGradMatMul checks the float32 kernel paths (split over the cores)
// against the float64 loops, in all three orientations.
func TestGradMatMul(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 16))
	m, n, k := 13, 6, 11
	mk := func(l int) ([]float32, []float64) {
		a := make([]float32, l)
		b := make([]float64, l)
		for i := range a {
			a[i] = float32(rng.NormFloat64())
			b[i] = float64(a[i])
		}
		return a, b
	}
	cmp := func(name string, a []float32, b []float64) {
		t.Helper()
		for i := range a {
			if math.Abs(float64(a[i])-b[i]) > 1e-4*(1+math.Abs(b[i])) {
				t.Fatalf("%s[%d]: float32 %g, float64 %g", name, i, a[i], b[i])
			}
		}
	}
	a32, a64 := mk(m * k)
	b32, b64 := mk(n * k)
	c32, c64 := mk(m * n)
	gMatMulT(c32, a32, b32, m, n, k, true)
	gMatMulT(c64, a64, b64, m, n, k, true)
	cmp("MatMulT", c32, c64)
	b32, b64 = mk(k * n)
	gMatMul(c32, a32, b32, m, n, k, false)
	gMatMul(c64, a64, b64, m, n, k, false)
	cmp("MatMul", c32, c64)
	a32, a64 = mk(k * m)
	gMatMulTN(c32, a32, b32, m, n, k, true, make([]float32, m*k))
	gMatMulTN(c64, a64, b64, m, n, k, true, nil)
	cmp("MatMulTN", c32, c64)
}

func TestGExpFloat32(t *testing.T) {
	worst := 0.0
	for x := float32(-87); x < 88; x += 0.01234 {
		got, want := float64(gExp[float32](x)), math.Exp(float64(x))
		worst = max(worst, math.Abs(got-want)/want)
	}
	if worst > 3e-7 {
		t.Fatalf("expf relative error %.3g", worst)
	}
	if gExp[float32](-100) != 0 || !math.IsInf(float64(gExp[float32](100)), 1) || gExp[float32](0) != 1 {
		t.Fatalf("expf limits: %g %g %g", gExp[float32](-100), gExp[float32](100), gExp[float32](0))
	}
	t.Logf("expf worst relative error %.3g", worst)
}

// TestExpRow checks the vector exp (AVX-512 where present) and its scalar
// tail against math.Exp, and the sum it returns.
func TestExpRow(t *testing.T) {
	src := make([]float32, 1000)
	for i := range src {
		src[i] = float32(i)*0.05 - 40
	}
	dst := make([]float32, len(src))
	sum := gExpRow(dst, src, 2, 3)
	var want float64
	for i, x := range src {
		w := math.Exp(float64(x*2 - 3)) // the argument rounded as float32 computes it
		want += w
		if math.Abs(float64(dst[i])-w) > 3e-7*w+1e-37 {
			t.Fatalf("element %d: %g, want %g", i, dst[i], w)
		}
	}
	if math.Abs(float64(sum)-want) > 1e-5*want {
		t.Fatalf("sum %g, want %g", sum, want)
	}
}
