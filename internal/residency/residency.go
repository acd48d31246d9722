// Package residency gives back the pages of pullguard's own executable
// that start-up and each burst of work touched and an idle daemon does not
// use.
//
// Go runs the initialization of every linked package before main, and
// those functions and their tables are spread over the whole executable;
// the kernel maps the page cache around each page touched (64 KiB at a
// time), so after start-up nearly all of a 23 MB binary is resident in the
// daemon, most of it code and read-only data it never runs again. A
// reconcile or a garbage collection later maps in several MiB more, which
// the daemon needs again only at the next one. Those pages are clean
// copies of the file: dropping the mapping (madvise(MADV_DONTNEED)) loses
// nothing, leaves them in the page cache, where the kernel can reclaim
// them like any unmapped file page, and a page the daemon needs later is
// mapped again on first use.
package residency

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// mapping is one of the process's memory mappings, from /proc/self/smaps.
type mapping struct {
	start, end uint64
	perms      string
	dev, inode uint64
	rss, anon  uint64 // bytes resident, and of those private anonymous (written) copies
}

// releasable are the mappings of the file (dev, inode) that hold only
// clean pages of it: not writable, and with no page written since (a PIE
// executable's relocated read-only data is, and must be kept). An
// executable's mappings lie next to each other, so reading stops at the
// first mapping after them: the kernel walks the page tables of each
// mapping it shows, and a process has hundreds more.
func releasable(smaps io.Reader, dev, inode uint64) ([]mapping, error) {
	var out []mapping
	var cur *mapping
	seen := false // a mapping of the file was read
	flush := func() {
		if cur != nil && cur.dev == dev && cur.inode == inode && !strings.Contains(cur.perms, "w") && cur.anon == 0 {
			out = append(out, *cur)
		}
		cur = nil
	}
	sc := bufio.NewScanner(smaps)
	sc.Buffer(make([]byte, 0, 4<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if m, ok := parseHeader(f); ok {
			flush()
			if m.dev == dev && m.inode == inode {
				seen = true
			} else if seen {
				return out, nil
			}
			cur = &m
			continue
		}
		if cur == nil || len(f) < 2 {
			continue
		}
		switch f[0] {
		case "Rss:":
			cur.rss = kib(f[1])
		case "Anonymous:":
			cur.anon = kib(f[1])
		}
	}
	flush()
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// parseHeader reads a mapping's first line: "start-end perms offset
// major:minor inode [path]".
func parseHeader(f []string) (mapping, bool) {
	if len(f) < 5 {
		return mapping{}, false
	}
	lo, hi, ok := strings.Cut(f[0], "-")
	if !ok {
		return mapping{}, false
	}
	var m mapping
	var err error
	if m.start, err = strconv.ParseUint(lo, 16, 64); err != nil {
		return mapping{}, false
	}
	if m.end, err = strconv.ParseUint(hi, 16, 64); err != nil {
		return mapping{}, false
	}
	maj, minor, ok := strings.Cut(f[3], ":")
	if !ok {
		return mapping{}, false
	}
	ma, err1 := strconv.ParseUint(maj, 16, 32)
	mi, err2 := strconv.ParseUint(minor, 16, 32)
	ino, err3 := strconv.ParseUint(f[4], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return mapping{}, false
	}
	m.perms, m.dev, m.inode = f[1], devNumber(uint32(ma), uint32(mi)), ino
	return m, true
}

// kib reads a "1234" of smaps' "kB" fields, in bytes.
func kib(s string) uint64 {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0
	}
	return n << 10
}

// Released is what ReleaseExecutable did.
type Released struct {
	Mappings int
	Bytes    uint64        // resident before, in the mappings released
	Took     time.Duration // reading smaps and the madvise calls
}

func (r Released) String() string {
	return fmt.Sprintf("%d KiB in %d mappings (%v)", r.Bytes>>10, r.Mappings, r.Took)
}
