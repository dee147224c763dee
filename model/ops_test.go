package model

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/sparsify/sparsify/mask"
)

func randVec(r *rand.Rand, n int, scale float32) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = (r.Float32()*2 - 1) * scale
	}
	return v
}

func near(t *testing.T, what string, got, want []float32, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: len %d, want %d", what, len(got), len(want))
	}
	for i := range got {
		if d := math.Abs(float64(got[i] - want[i])); d > tol*(1+math.Abs(float64(want[i]))) || math.IsNaN(float64(got[i])) {
			t.Fatalf("%s[%d] = %v, want %v", what, i, got[i], want[i])
		}
	}
}

func TestRMSNorm(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	rows, dim := 3, 10
	x, w := randVec(r, rows*dim, 2), randVec(r, dim, 1)
	want := make([]float32, rows*dim)
	for i := 0; i < rows; i++ {
		var ss float64
		for j := 0; j < dim; j++ {
			ss += float64(x[i*dim+j]) * float64(x[i*dim+j])
		}
		s := 1 / math.Sqrt(ss/float64(dim)+1e-5)
		for j := 0; j < dim; j++ {
			want[i*dim+j] = float32(float64(x[i*dim+j]) * s * float64(w[j]))
		}
	}
	got := make([]float32, rows*dim)
	RMSNorm(got, x, w, rows, dim, 1e-5)
	near(t, "rmsnorm", got, want, 1e-6)
	RMSNorm(x, x, w, rows, dim, 1e-5) // aliasing
	near(t, "rmsnorm in place", x, want, 1e-6)
}

func TestRoPE(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	B, T, H, hd := 2, 5, 3, 8
	const theta = 10000
	for _, inter := range []bool{true, false} {
		x := randVec(r, B*T*H*hd, 1)
		want := make([]float32, len(x))
		for b := 0; b < B; b++ {
			for tt := 0; tt < T; tt++ {
				pos := 2 + tt
				for h := 0; h < H; h++ {
					base := ((b*T+tt)*H + h) * hd
					for i := 0; i < hd/2; i++ {
						ang := float64(pos) / math.Pow(theta, float64(2*i)/float64(hd))
						i0, i1 := base+2*i, base+2*i+1
						if !inter {
							i0, i1 = base+i, base+i+hd/2
						}
						a, c := float64(x[i0]), float64(x[i1])
						want[i0] = float32(a*math.Cos(ang) - c*math.Sin(ang))
						want[i1] = float32(a*math.Sin(ang) + c*math.Cos(ang))
					}
				}
			}
		}
		rope := NewRope(hd, 16, theta, inter)
		got := append([]float32(nil), x...)
		rope.Apply(got, B, T, H, 2)
		near(t, "rope", got, want, 1e-5)
		rope.ApplyInverse(got, B, T, H, 2)
		near(t, "rope inverse", got, x, 1e-5)
	}
}

func TestSoftmaxSwiGLU(t *testing.T) {
	x := []float32{1, 2, 3, -1000}
	Softmax(x)
	e := []float64{math.Exp(1), math.Exp(2), math.Exp(3)}
	s := e[0] + e[1] + e[2]
	near(t, "softmax", x, []float32{float32(e[0] / s), float32(e[1] / s), float32(e[2] / s), 0}, 1e-6)
	g, u := []float32{-2, 0, 3}, []float32{1, 5, 2}
	out := make([]float32, 3)
	SwiGLU(out, g, u)
	want := make([]float32, 3)
	for i := range g {
		want[i] = float32(float64(g[i]) / (1 + math.Exp(-float64(g[i]))) * float64(u[i]))
	}
	near(t, "swiglu", out, want, 1e-6)
}

func TestAttention(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	B, T, H, KV, hd := 2, 6, 4, 2, 4
	q := randVec(r, B*T*H*hd, 1)
	k := randVec(r, B*T*KV*hd, 1)
	v := randVec(r, B*T*KV*hd, 1)
	want := make([]float32, B*T*H*hd)
	for b := 0; b < B; b++ {
		for h := 0; h < H; h++ {
			kh := h / (H / KV)
			for i := 0; i < T; i++ {
				sc := make([]float64, i+1)
				var mx = math.Inf(-1)
				for j := 0; j <= i; j++ {
					var d float64
					for c := 0; c < hd; c++ {
						d += float64(q[((b*T+i)*H+h)*hd+c]) * float64(k[((b*T+j)*KV+kh)*hd+c])
					}
					sc[j] = d / math.Sqrt(float64(hd))
					mx = math.Max(mx, sc[j])
				}
				var sum float64
				for j := range sc {
					sc[j] = math.Exp(sc[j] - mx)
					sum += sc[j]
				}
				for c := 0; c < hd; c++ {
					var o float64
					for j := range sc {
						o += sc[j] / sum * float64(v[((b*T+j)*KV+kh)*hd+c])
					}
					want[((b*T+i)*H+h)*hd+c] = float32(o)
				}
			}
		}
	}
	got := make([]float32, len(want))
	probs := make([]float32, B*H*T*T)
	Attention(got, q, k, v, B, T, H, KV, hd, probs)
	near(t, "attention", got, want, 1e-5)
	for i := 0; i < T; i++ { // rows of probs sum to 1, zero above the diagonal
		var s float32
		for j := 0; j < T; j++ {
			p := probs[i*T+j]
			if j > i && p != 0 {
				t.Fatalf("probs[%d,%d] = %v above the diagonal", i, j, p)
			}
			s += p
		}
		if math.Abs(float64(s-1)) > 1e-5 {
			t.Fatalf("probs row %d sums to %v", i, s)
		}
	}
	got2 := make([]float32, len(want))
	Attention(got2, q, k, v, B, T, H, KV, hd, nil)
	near(t, "attention without probs", got2, want, 1e-6)
}

func TestLinearMasks(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for _, rows := range []int{1, 3, 40} {
		out, in := 24, 8
		l := &Linear{Name: "w", Out: out, In: in, W: randVec(r, out*in, 1), B: randVec(r, out, 1)}
		x := randVec(r, rows*in, 1)
		mk := mask.New(out, in)
		soft := randVec(r, out*in, 1)
		for i := range mk.Keep {
			mk.Keep[i] = i%4 < 2
		}
		for _, mode := range []string{"dense", "mask", "soft"} {
			l.Mask, l.Soft = nil, nil
			eff := func(i int) float64 { return float64(l.W[i]) }
			switch mode {
			case "mask":
				if err := l.SetMask(mk); err != nil {
					t.Fatal(err)
				}
				eff = func(i int) float64 {
					if mk.Keep[i] {
						return float64(l.W[i])
					}
					return 0
				}
			case "soft":
				l.Soft = soft
				eff = func(i int) float64 { return float64(l.W[i]) * float64(soft[i]) }
			}
			want := make([]float32, rows*out)
			for i := 0; i < rows; i++ {
				for j := 0; j < out; j++ {
					s := float64(l.B[j])
					for p := 0; p < in; p++ {
						s += float64(x[i*in+p]) * eff(j*in+p)
					}
					want[i*out+j] = float32(s)
				}
			}
			got := make([]float32, rows*out)
			l.Forward(got, x, rows)
			near(t, mode, got, want, 1e-5)
		}
	}
	l := &Linear{Name: "w", Out: 2, In: 4, W: make([]float32, 8)}
	if err := l.SetMask(mask.New(4, 2)); err == nil {
		t.Fatal("mask of the wrong shape accepted")
	}
}

func TestFastExpf(t *testing.T) {
	for x := float32(-87); x < 88; x += 0.0137 {
		got, want := float64(fastExp(x)), math.Exp(float64(x))
		if math.Abs(got-want) > 4e-7*want {
			t.Fatalf("fastExp(%v) = %v, want %v", x, got, want)
		}
	}
	if fastExp(-100) != 0 || !math.IsInf(float64(fastExp(100)), 1) || fastExp(0) != 1 {
		t.Fatal("expf range ends")
	}
}

func TestSoftmaxLengths(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	for _, n := range []int{1, 15, 16, 17, 33, 100, 257} {
		x := randVec(r, n, 30)
		x[n/2] = -200 // far below the max: underflows towards 0
		want := make([]float32, n)
		mx := math.Inf(-1)
		for _, v := range x {
			mx = math.Max(mx, float64(v))
		}
		var s float64
		for i, v := range x {
			e := math.Exp(float64(v) - mx)
			want[i] = float32(e)
			s += e
		}
		for i := range want {
			want[i] = float32(float64(want[i]) / s)
		}
		Softmax(x)
		for i := range x {
			if math.Abs(float64(x[i]-want[i])) > 1e-6 {
				t.Fatalf("n=%d: softmax[%d] = %v, want %v", n, i, x[i], want[i])
			}
		}
	}
}

func TestSwiGLURange(t *testing.T) {
	for _, g := range []float32{-200, -90, -88, -30, -1, -1e-3, 0, 1e-3, 1, 30, 88, 90, 200} {
		out := make([]float32, 1)
		SwiGLU(out, []float32{g}, []float32{2})
		want := 2 * float64(g) / (1 + math.Exp(-float64(g)))
		if math.Abs(float64(out[0])-want) > 1e-6*(1+math.Abs(want)) || math.IsNaN(float64(out[0])) {
			t.Fatalf("SwiGLU(%v) = %v, want %v", g, out[0], want)
		}
	}
}
