//go:build !unix

package mask

func cpuSeconds() float64 { return 0 }
