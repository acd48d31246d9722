package lint

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
)

// doublingBomb is the Dockerfile of the issue: ARG A=seed, then n ARGs
// each twice the one before, then FROM the last. Without a bound it holds
// len(seed)·2^n bytes by the last line.
func doublingBomb(seed string, n int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "ARG A=%s\n", seed)
	prev := "A"
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "ARG B%d=${%s}${%s}\n", i, prev, prev)
		prev = fmt.Sprintf("B%d", i)
	}
	fmt.Fprintf(&b, "FROM $%s\n", prev)
	return b.String()
}

// allocated is the number of bytes f allocates (and any goroutine running
// meanwhile: the tests that use it run alone).
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestExpansionBomb: the 26-line Dockerfile of doubling ARGs (1 GiB by its
// last line from a 64-byte seed) is refused — its FROM unresolved, naming
// the ARG and line where it passed the bound — while lint allocates under
// 2 MiB.
func TestExpansionBomb(t *testing.T) {
	src := doublingBomb(strings.Repeat("x", 64), 24)
	if n := strings.Count(src, "\n"); n != 26 {
		t.Fatalf("%d lines", n)
	}
	l := testLinter(t, nil)
	var (
		fs  []Finding
		err error
	)
	n := allocated(func() { fs, err = l.Lint(t.Context(), "Dockerfile", Dockerfile, []byte(src)) })
	if err != nil {
		t.Fatal(err)
	}
	// B6 is 64·2^6 = 4096 bytes, within the bound; B7 is twice that.
	want := "unresolved: ARG B7 on line 8 expands to more than 4096 bytes, which no image reference needs"
	if len(fs) != 1 || fs[0].Line != 26 || !fs[0].Unresolved || fs[0].Decision.Allowed || fs[0].Decision.Reason != want {
		t.Errorf("findings %+v, want one unresolved FROM on line 26: %s", fs, want)
	}
	if n > 2<<20 {
		t.Errorf("linting the bomb allocated %d bytes, want under 2 MiB", n)
	}
}

// TestExpansionLimits: each bound, on ARG values and on FROM itself, and
// what stays within them.
func TestExpansionLimits(t *testing.T) {
	kib := strings.Repeat("x", 1024)
	var many strings.Builder // 300 ARGs of 4 KiB: each within the bound, 1.2 MiB together
	fmt.Fprintf(&many, "ARG A=%s\n", strings.Repeat(kib, 4))
	for i := range 300 {
		fmt.Fprintf(&many, "ARG C%d=${A}\n", i)
	}
	many.WriteString("ARG T=alpine:3.20\nFROM $T\n")

	cases := []struct {
		name, src string
		want      string // the FROM's reason, or its reference if allowed
	}{
		{"a value just within the bound is expanded", fmt.Sprintf("ARG A=%s\nARG B=${A}\nFROM alpine:3.20${B:+}\n", strings.Repeat(kib, 4)),
			"docker.io/library/alpine:3.20"},
		{"FROM itself past the bound", fmt.Sprintf("ARG A=%s\nFROM ${A}${A}${A}\n", kib+kib),
			"unresolved: the reference expands to more than 4096 bytes, which no image reference needs"},
		{"a refused ARG taints what is built from it", fmt.Sprintf("ARG A=%s\nARG B=${A}${A}${A}\nARG C=alpine:${B:+3.20}\nFROM $C\n", kib+kib),
			"unresolved: ARG B on line 2 expands to more than 4096 bytes, which no image reference needs"},
		{"a refused default is not replaced by its fallback", fmt.Sprintf("ARG A=%s\nARG B=${A}${A}${A}\nFROM ${B:-alpine:3.20}\n", kib+kib),
			"unresolved: ARG B on line 2 expands to more than 4096 bytes, which no image reference needs"},
		{"the Dockerfile's total", many.String(),
			"unresolved: ARG T on line 302 is past the 1048576 bytes lint expands in one Dockerfile"},
		{"a pattern substitution within the bound", "ARG V=3_20\nFROM alpine:${V//_/.}\n", "docker.io/library/alpine:3.20"},
		{"a pattern substitution that multiplies", fmt.Sprintf("ARG A=%s\nFROM ${A//?/%s}\n", kib, kib),
			"unresolved: the reference expands to more than 4096 bytes, which no image reference needs"},
		{"nested pattern substitutions read less", fmt.Sprintf("ARG A=%s\nFROM ${A//?/${A//?/${A//?/${A}}}}\n", strings.Repeat("x", 40)),
			"unresolved: the reference expands to more than 4096 bytes, which no image reference needs"},
		{"too many nested pattern substitutions", "ARG A=xy\nFROM ${A//?/${A//?/${A//?/${A//?/${A}}}}}\n",
			"unresolved: the reference holds too many ${NAME/pattern/replacement} for its 36 bytes: expanding it could build more than 4194304 bytes"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var (
				fs  []Finding
				err error
			)
			n := allocated(func() { fs, err = testLinter(t, nil).Lint(t.Context(), "Dockerfile", Dockerfile, []byte(tc.src)) })
			if err != nil {
				t.Fatal(err)
			}
			if len(fs) != 1 {
				t.Fatalf("want one finding, got %v", verdicts(fs))
			}
			d := fs[0].Decision
			got := d.Reason
			if d.Allowed {
				got = d.Reference
			}
			if got != tc.want || (d.Allowed && fs[0].Unresolved) {
				t.Errorf("got %q (%v), want %q", got, verdicts(fs), tc.want)
			}
			// The Dockerfile's total lets its expansions hold 1 MiB, which
			// their copies multiply (about 3 MiB here, 14 MiB under the race
			// detector); the other cases allocate under 300 KiB.
			if n > 32<<20 {
				t.Errorf("allocated %d bytes, want under 32 MiB", n)
			}
		})
	}
}
