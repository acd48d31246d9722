package residency

import (
	"errors"
	"io"
	"os"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
)

// An excerpt of /proc/PID/smaps: the executable (fe:00 inode 42) mapped
// four times, a library, and anonymous memory.
const smaps = `00400000-00db1000 r-xp 00000000 fe:00 42                                 /usr/bin/pullguard
Size:               9924 kB
Rss:                9216 kB
Anonymous:             0 kB
VmFlags: rd ex mr mw me
00db1000-01926000 r--p 009b1000 fe:00 42                                 /usr/bin/pullguard
Size:              11732 kB
Rss:               10324 kB
Anonymous:             0 kB
01926000-01930000 r--p 01526000 fe:00 42                                 /usr/bin/pullguard
Size:                 40 kB
Rss:                  40 kB
Anonymous:            40 kB
01930000-019b8000 rw-p 01530000 fe:00 42                                 /usr/bin/pullguard
Size:                544 kB
Rss:                 520 kB
Anonymous:           180 kB
7f0000000000-7f0000100000 r-xp 00000000 fe:00 77                         /usr/lib/libother.so
Size:               1024 kB
Rss:                 512 kB
Anonymous:             0 kB
7f1db5c0a000-7f1db5cac000 rw-p 00000000 00:00 0
Size:                648 kB
Rss:                 488 kB
Anonymous:           488 kB
`

func TestReleasable(t *testing.T) {
	ms, err := releasable(strings.NewReader(smaps), devNumber(0xfe, 0), 42)
	if err != nil {
		t.Fatal(err)
	}
	// The code and the read-only data; not the written read-only copy
	// (a PIE's relocations), not the writable data, nothing of another file.
	if len(ms) != 2 {
		t.Fatalf("releasable: %+v, want the two clean read-only mappings", ms)
	}
	if ms[0].start != 0x400000 || ms[0].end != 0xdb1000 || ms[0].rss != 9216<<10 {
		t.Errorf("code mapping read as %+v", ms[0])
	}
	if ms[1].start != 0xdb1000 || ms[1].perms != "r--p" || ms[1].rss != 10324<<10 {
		t.Errorf("read-only data mapping read as %+v", ms[1])
	}
	if ms, _ := releasable(strings.NewReader(smaps), devNumber(0xfe, 0), 77); len(ms) != 1 || ms[0].start != 0x7f0000000000 {
		t.Errorf("the library's code mapping read as %+v", ms)
	}
	if ms, _ := releasable(strings.NewReader(smaps), devNumber(0xfe, 1), 42); len(ms) != 0 {
		t.Errorf("another device's inode 42 matched: %+v", ms)
	}
}

// Reading stops at the first mapping after the executable's: the kernel
// computes each mapping's figures as it is read.
func TestReleasableStopsAfterTheExecutable(t *testing.T) {
	r := io.MultiReader(strings.NewReader(smaps), iotest.ErrReader(errors.New("read past the executable's mappings")))
	ms, err := releasable(r, devNumber(0xfe, 0), 42)
	if err != nil || len(ms) != 2 {
		t.Fatalf("releasable: %+v, %v; want the two clean read-only mappings and no further reading", ms, err)
	}
}

// The test binary gives back its executable's pages, and runs on: its code
// comes back from the page cache as it is used.
func TestReleaseExecutable(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("needs /proc/self/smaps")
	}
	before := rssFile(t)
	r, err := ReleaseExecutable()
	if err != nil {
		t.Fatal(err)
	}
	after := rssFile(t)
	if r.Mappings == 0 || r.Bytes == 0 {
		t.Fatalf("released %v", r)
	}
	if after >= before {
		t.Errorf("RssFile %d KiB before, %d KiB after releasing %v", before, after, r)
	}
	t.Logf("RssFile %d KiB before, %d KiB after releasing %v", before, after, r)
	// Code and read-only tables not run since start-up still work.
	re := regexp.MustCompile(`^(\d+)-(\d+)$`)
	if m := re.FindStringSubmatch("12-34"); len(m) != 3 || m[2] != "34" {
		t.Errorf("regexp after release: %q", m)
	}
}

func rssFile(t *testing.T) int {
	t.Helper()
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "RssFile:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no RssFile in /proc/self/status")
	return 0
}

// BenchmarkReleaseExecutable: what one release costs the process (reading
// its smaps, madvise), not counting mapping the pages back as they are used.
func BenchmarkReleaseExecutable(b *testing.B) {
	if runtime.GOOS != "linux" {
		b.Skip("needs /proc/self/smaps")
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ReleaseExecutable(); err != nil {
			b.Fatal(err)
		}
	}
}
