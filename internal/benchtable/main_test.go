package main

import (
	"strings"
	"testing"
)

// Two runs of two benchmarks as `go test -bench -count 2` prints them.
const sample = `goos: linux
goarch: amd64
pkg: github.com/pullguard/pullguard/policy
cpu: AMD EPYC 7B13
BenchmarkDenialWithHint-2   	  200000	         0 ns/op	       700 p50-ns/10rules	       720 p50-ns/10000rules	         1.03 ratio-10000/10
BenchmarkDenialWithHint-2   	  200000	         0 ns/op	       710 p50-ns/10rules	       740 p50-ns/10000rules	         1.04 ratio-10000/10
BenchmarkParseBaseline-2    	  200000	      4000 ns/op	     288 B/op	       8 allocs/op
BenchmarkParseBaseline-2    	  200000	     61640 ns/op	     288 B/op	       8 allocs/op
PASS
pkg: github.com/pullguard/pullguard/cmd/pullguard
BenchmarkCheckCommand-2   	       1	         0 ns/op	         1.8 p50-us/ref	         4.7 baseline-p50-us/ref
`

func TestTable(t *testing.T) {
	r := &report{files: []string{"pullguard-bench-policy.txt"}}
	if err := r.parse(strings.NewReader(sample)); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	r.write(&out, "0.50 0.40 0.30")
	want := "Command: make bench (pullguard-bench-policy.txt)\n" +
		"Machine: AMD EPYC 7B13, GOMAXPROCS 2, load average 0.50 0.40 0.30\n\n" +
		"| benchmark | package | figure | baseline (same run) |\n" +
		"| --- | --- | --- | --- |\n" +
		"| `BenchmarkDenialWithHint` | `policy` | 730 p50-ns/10000rules (median of 2 runs) | 705 p50-ns/10rules, 1.035 ratio-10000/10 |\n" +
		"| `BenchmarkParseBaseline` | `policy` | 32820 ns/op, 288 B/op, 8 allocs/op (median of 2 runs) | — |\n" +
		"| `BenchmarkCheckCommand` | `cmd/pullguard` | 1.8 p50-us/ref | 4.7 baseline-p50-us/ref |\n"
	if got := out.String(); got != want {
		t.Errorf("table:\n%s\nwant:\n%s", got, want)
	}
}

func TestParseRefusesABadFigure(t *testing.T) {
	r := &report{}
	err := r.parse(strings.NewReader("BenchmarkX-2  10  fast ns/op\n"))
	if err == nil || !strings.Contains(err.Error(), `"fast" is not a figure`) {
		t.Errorf("parse of a bad figure: %v", err)
	}
}
