package llama

import (
	"fmt"
	"strings"
)

// RoPE row permutation. Hugging Face stores q_proj/k_proj for the
// "rotate half" RoPE (pairs (i, i+d/2) in each head); llama.cpp's llama
// architecture rotates interleaved pairs (2i, 2i+1). convert_hf_to_gguf.py
// reorders the rows of q and k (and their biases) with
//
//	w.reshape(n_head, 2, rows/n_head/2, ...).swapaxes(1, 2).reshape(w.shape)
//
// using n_head for q and n_head_kv for k. Permute applies that; Unpermute is
// its inverse. Rows move whole, so any dtype, quantized blocks included (a
// GGUF row is a whole number of blocks), permutes as raw bytes.

// PermuteHeads returns how many heads the q/k permutation of a tensor uses,
// or 0 when the tensor is not permuted (other tensors; architectures such as
// qwen2 that llama.cpp runs with NEOX RoPE and therefore does not permute).
// name may be a HF or GGUF name.
func PermuteHeads(arch, name string, nHead, nKVHead int) int {
	if !permutedArch(arch) {
		return 0
	}
	h := name
	if g, ok := ToHF(name); ok {
		h = g
	}
	switch {
	case strings.HasSuffix(h, ".self_attn.q_proj.weight"), strings.HasSuffix(h, ".self_attn.q_proj.bias"):
		return nHead
	case strings.HasSuffix(h, ".self_attn.k_proj.weight"), strings.HasSuffix(h, ".self_attn.k_proj.bias"):
		if nKVHead > 0 {
			return nKVHead
		}
		return nHead
	}
	return 0
}

// permutedArch: GGUF architectures whose q/k llama.cpp's converter permutes.
func permutedArch(arch string) bool {
	switch arch {
	case "llama", "mistral", "":
		return true
	}
	return false
}

func checkPermute(dst, src []byte, rows, nHead int) (rowBytes, half int, err error) {
	if rows <= 0 || nHead <= 0 || rows%(2*nHead) != 0 {
		return 0, 0, fmt.Errorf("llama: cannot permute %d rows over %d heads: rows must be a multiple of 2×heads", rows, nHead)
	}
	if len(src)%rows != 0 || len(dst) != len(src) {
		return 0, 0, fmt.Errorf("llama: permute: %d bytes do not make %d rows (dst %d bytes)", len(src), rows, len(dst))
	}
	return len(src) / rows, rows / nHead / 2, nil
}

// Permute reorders rows HF → GGUF: dst row h*hd + 2i + j = src row h*hd + j*half + i.
// dst and src must not overlap.
func Permute(dst, src []byte, rows, nHead int) error {
	rb, half, err := checkPermute(dst, src, rows, nHead)
	if err != nil {
		return err
	}
	hd := 2 * half
	for h := 0; h < nHead; h++ {
		for i := 0; i < half; i++ {
			for j := 0; j < 2; j++ {
				d := h*hd + 2*i + j
				s := h*hd + j*half + i
				copy(dst[d*rb:(d+1)*rb], src[s*rb:(s+1)*rb])
			}
		}
	}
	return nil
}

// Unpermute is the inverse of Permute (GGUF → HF).
func Unpermute(dst, src []byte, rows, nHead int) error {
	rb, half, err := checkPermute(dst, src, rows, nHead)
	if err != nil {
		return err
	}
	hd := 2 * half
	for h := 0; h < nHead; h++ {
		for i := 0; i < half; i++ {
			for j := 0; j < 2; j++ {
				d := h*hd + j*half + i
				s := h*hd + 2*i + j
				copy(dst[d*rb:(d+1)*rb], src[s*rb:(s+1)*rb])
			}
		}
	}
	return nil
}
