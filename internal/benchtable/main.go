// Command benchtable prints the figures of Go benchmark output as the table
// of docs/performance.md: one row a benchmark, each figure the median of its
// runs, the same-run baseline in a column of its own. `make bench` runs it
// on the outputs it writes to /tmp/pullguard-bench-*.txt.
//
// A figure is a baseline when its unit says so: the benchmarks name the
// figures they are compared with baseline-*, floor*, *-off-*, the policy
// core's the same at 10 rules, or give the comparison itself as a ratio.
package main

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// row is one benchmark's runs: for each unit, the value of every run.
type row struct {
	pkg, name string
	runs      int
	units     []string // in the order the benchmark reports them
	values    map[string][]float64
}

// report is everything read from the benchmark outputs.
type report struct {
	rows  []*row
	cpu   string
	procs string // GOMAXPROCS, from the benchmarks' -N suffix
	files []string
}

var (
	benchLine = regexp.MustCompile(`^(Benchmark\S+?)(?:-(\d+))?\s+(\d+)\s+(.*)$`)
	baseline  = regexp.MustCompile(`baseline|floor|(^|-)off(-|$)|ratio|dockerd|\b10rules`)
)

// parse reads one file of `go test -bench` output into r.
func (r *report) parse(in io.Reader) error {
	byKey := map[string]*row{}
	for _, x := range r.rows {
		byKey[x.pkg+" "+x.name] = x
	}
	pkg := ""
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, "pkg: "); ok {
			pkg = strings.TrimPrefix(v, "github.com/pullguard/pullguard/")
			continue
		}
		if v, ok := strings.CutPrefix(line, "cpu: "); ok {
			r.cpu = v
			continue
		}
		m := benchLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		if m[2] != "" {
			r.procs = m[2]
		}
		key := pkg + " " + m[1]
		x := byKey[key]
		if x == nil {
			x = &row{pkg: pkg, name: m[1], values: map[string][]float64{}}
			byKey[key] = x
			r.rows = append(r.rows, x)
		}
		x.runs++
		f := strings.Fields(m[4])
		for i := 0; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return fmt.Errorf("%s: %q is not a figure", m[1], f[i])
			}
			unit := f[i+1]
			if _, seen := x.values[unit]; !seen {
				x.units = append(x.units, unit)
			}
			x.values[unit] = append(x.values[unit], v)
		}
	}
	return sc.Err()
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// figure writes v with four significant digits, or as a whole number from
// 1,000 up, never in exponent form.
func figure(v float64) string {
	if math.Abs(v) >= 1000 {
		return strconv.FormatFloat(math.Round(v), 'f', -1, 64)
	}
	return strconv.FormatFloat(v, 'g', 4, 64)
}

// cells are a row's figures and its baselines, "value unit" each. A
// benchmark that reports its own figures sets ns/op to 0: that is left out.
func (x *row) cells() (figures, baselines string) {
	var fs, bs []string
	for _, u := range x.units {
		v := median(x.values[u])
		if u == "ns/op" && v == 0 {
			continue
		}
		c := figure(v) + " " + u
		if baseline.MatchString(u) {
			bs = append(bs, c)
		} else {
			fs = append(fs, c)
		}
	}
	return strings.Join(fs, ", "), strings.Join(bs, ", ")
}

// write prints the table with the command and the machine it ran on.
func (r *report) write(w io.Writer, load string) {
	fmt.Fprintf(w, "Command: make bench (%s)\n", strings.Join(r.files, ", "))
	fmt.Fprintf(w, "Machine: %s, GOMAXPROCS %s, load average %s\n\n", r.cpu, r.procs, load)
	fmt.Fprintln(w, "| benchmark | package | figure | baseline (same run) |")
	fmt.Fprintln(w, "| --- | --- | --- | --- |")
	for _, x := range r.rows {
		f, b := x.cells()
		if x.runs > 1 {
			f += fmt.Sprintf(" (median of %d runs)", x.runs)
		}
		if b == "" {
			b = "—"
		}
		fmt.Fprintf(w, "| `%s` | `%s` | %s | %s |\n", x.name, x.pkg, f, b)
	}
}

func main() {
	files := os.Args[1:]
	if len(files) == 0 {
		files, _ = filepath.Glob("/tmp/pullguard-bench-*.txt")
	}
	if len(files) == 0 {
		fmt.Fprintln(os.Stderr, "benchtable: no benchmark output (run make bench, or name the files)")
		os.Exit(2)
	}
	r := &report{}
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			fmt.Fprintln(os.Stderr, "benchtable:", err)
			os.Exit(2)
		}
		err = r.parse(f)
		f.Close()
		if err != nil {
			fmt.Fprintf(os.Stderr, "benchtable: %s: %v\n", name, err)
			os.Exit(2)
		}
		r.files = append(r.files, filepath.Base(name))
	}
	load := "unknown"
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		load = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	r.write(os.Stdout, load)
}
