package lint

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// linkTree builds a tree with every shape of link, beside a directory
// outside it, and returns the tree.
func linkTree(t *testing.T) string {
	t.Helper()
	base := t.TempDir()
	outside := filepath.Join(base, "outside")
	tree := filepath.Join(base, "tree")
	for _, dir := range []string{outside, tree + "/real", tree + "/abs", tree + "/up", tree + "/via", tree + "/loop",
		tree + "/dangling", tree + "/pipe", tree + "/k8s", tree + "/dirs"} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(path, content string) {
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	link := func(target, name string) {
		if err := os.Symlink(target, filepath.Join(tree, name)); err != nil {
			t.Fatal(err)
		}
	}
	write(outside+"/Dockerfile", "FROM evil.io/miner:1\n")
	write(tree+"/real/base.Dockerfile", "FROM alpine:3.20\n")
	write(tree+"/real/pod.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: c, image: evil.io/miner:1}]\n")
	if err := syscall.Mkfifo(tree+"/pipe/fifo", 0o644); err != nil {
		t.Fatal(err)
	}
	link("real/base.Dockerfile", "Dockerfile")          // inside: linted as Dockerfile
	link("../real/pod.yaml", "k8s/deploy.yaml")         // inside, a probed manifest
	link(outside+"/Dockerfile", "abs/Dockerfile")       // absolute, out
	link("../../outside/Dockerfile", "up/Dockerfile")   // .. past the root
	link(outside, "dirs/linked")                        // a directory out of the tree
	link("../dirs/linked/Dockerfile", "via/Dockerfile") // out through a linked directory
	link("compose.yaml", "loop/compose.yaml")           // loops on itself
	link("other.Dockerfile", "loop/x.Dockerfile")       // two links in a loop
	link("x.Dockerfile", "loop/other.Dockerfile")       //
	link("missing/Dockerfile", "dangling/Dockerfile")   // leads nowhere
	link("fifo", "pipe/Dockerfile")                     // a named pipe would hang a read
	link("../real", "dirs/inside")                      // a directory in the tree: walked as real/
	link("/etc/hostname", "notes.txt")                  // not an input: ignored
	link(outside, "vendor")                             // skipped by name, as a directory would be
	link("../loop/compose.yaml", "dirs/README")         // not an input, loops: ignored
	return tree
}

// TestWalkLinks: a linked Dockerfile or manifest inside the tree is linted
// under the link's name; one that leaves the tree by any road, loops, leads
// nowhere or to something not a file is a denied finding of its own; other
// links are ignored. Before, the walk skipped every link without a word.
func TestWalkLinks(t *testing.T) {
	tree := linkTree(t)
	inputs, err := Collect(t.Context(), []string{tree}, "")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]Input{}
	for _, in := range inputs {
		rel, _ := filepath.Rel(tree, in.Path)
		got[rel] = in
	}
	want := map[string]string{ // path → what Refused says, "" if linted
		"Dockerfile":            "",
		"real/base.Dockerfile":  "",
		"real/pod.yaml":         "",
		"k8s/deploy.yaml":       "",
		"abs/Dockerfile":        "the link leads out of the tree lint walks, to the file " + filepath.Dir(tree) + "/outside/Dockerfile",
		"up/Dockerfile":         "the link leads out of the tree lint walks, to the file " + filepath.Dir(tree) + "/outside/Dockerfile",
		"via/Dockerfile":        "the link leads out of the tree lint walks, to the file " + filepath.Dir(tree) + "/outside/Dockerfile",
		"dirs/linked":           "the link leads out of the tree lint walks, to the directory " + filepath.Dir(tree) + "/outside",
		"loop/compose.yaml":     "the link loops",
		"loop/x.Dockerfile":     "the link loops",
		"loop/other.Dockerfile": "the link loops",
		"dangling/Dockerfile":   "the link leads to nothing: missing/Dockerfile does not exist",
		"pipe/Dockerfile":       "the link leads to " + tree + "/pipe/fifo, which is not a regular file",
	}
	for path, why := range want {
		in, ok := got[path]
		switch {
		case !ok:
			t.Errorf("%s: not collected", path)
		case why == "" && in.Refused != "":
			t.Errorf("%s: refused (%s), want it linted", path, in.Refused)
		case !strings.HasPrefix(in.Refused, why):
			t.Errorf("%s: refused %q, want %q", path, in.Refused, why)
		}
		delete(got, path)
	}
	for path := range got {
		t.Errorf("%s: collected, want it ignored", path)
	}

	// A refused link is one denied, unresolved finding naming the link.
	fs, errs := testLinter(t, nil).LintAll(t.Context(), inputs)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	found := map[string][]string{}
	for _, f := range fs {
		rel, _ := filepath.Rel(tree, f.File)
		found[rel] = append(found[rel], strings.Join([]string{f.Source, f.Input, verdicts([]Finding{f})[0]}, " | "))
		if f.Source == "symlink" && (f.Decision.Allowed || !f.Unresolved) {
			t.Errorf("%s: %+v", rel, f)
		}
	}
	for path, want := range map[string]string{
		"Dockerfile":      "FROM | alpine:3.20 | ALLOW | docker.io/library/alpine:3.20",
		"k8s/deploy.yaml": "Pod p container c | evil.io/miner:1 | DENY | evil.io/miner:1",
		"abs/Dockerfile":  "symlink | " + filepath.Dir(tree) + "/outside/Dockerfile | DENY | ",
		"up/Dockerfile":   "symlink | ../../outside/Dockerfile | DENY | ",
	} {
		if len(found[path]) != 1 || !strings.HasSuffix(found[path][0], want) {
			t.Errorf("%s: findings %q, want one ending %q", path, found[path], want)
		}
	}

	// A root given as a link is walked, its files named under the link.
	root := filepath.Join(t.TempDir(), "checkout")
	if err := os.Symlink(tree, root); err != nil {
		t.Fatal(err)
	}
	inputs, err = Collect(t.Context(), []string{root}, "")
	if err != nil || len(inputs) != len(want) {
		t.Fatalf("through a linked root: %d inputs, %v", len(inputs), err)
	}
	for _, in := range inputs {
		if !strings.HasPrefix(in.Path, root+"/") {
			t.Errorf("%s is not named under %s", in.Path, root)
		}
	}
}

// TestCancelStopsLint: a cancelled context stops the walk, and LintAll
// returns at once even while an input cannot be read (a named pipe no one
// writes, named on the command line).
func TestCancelStopsLint(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := Collect(ctx, []string{"testdata/corpus"}, ""); !errors.Is(err, context.Canceled) {
		t.Errorf("Collect after cancel: %v", err)
	}

	fifo := filepath.Join(dir, "Dockerfile")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	inputs, err := Collect(t.Context(), []string{fifo, "testdata/corpus"}, "")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel = context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	fs, errs := testLinter(t, nil).LintAll(ctx, inputs)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("LintAll returned %v after the cancel", d-200*time.Millisecond)
	}
	if fs != nil || len(errs) != 1 || !errors.Is(errs[0], context.DeadlineExceeded) {
		t.Errorf("findings %d, errors %v; want only the context's error", len(fs), errs)
	}
	// Let the abandoned read finish, so the test leaves nothing behind.
	if w, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
		w.Close()
	}
}

// TestInputSizeBound: a file larger than any real input (here a sparse
// 65 MiB Dockerfile; a repository could hold 10 GB) is a parse error with
// its name, refused before it is read; a pipe is cut off at the bound.
func TestInputSizeBound(t *testing.T) {
	path := filepath.Join(t.TempDir(), "Dockerfile")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(maxInputSize + 1<<20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	inputs, err := Collect(t.Context(), []string{filepath.Dir(path)}, "")
	if err != nil || len(inputs) != 1 {
		t.Fatalf("%v, %v", inputs, err)
	}
	var fs []Finding
	n := allocated(func() { fs, err = testLinter(t, nil).LintInput(t.Context(), inputs[0]) })
	var pe *ParseError
	if fs != nil || !errors.As(err, &pe) || err.Error() != path+": over 64 MiB, more than lint reads of one file" {
		t.Errorf("findings %v, error %v", fs, err)
	}
	if n > 1<<20 {
		t.Errorf("allocated %d bytes to refuse it", n)
	}
	if _, err := ReadInput(io.LimitReader(zeros{}, maxInputSize+1)); err == nil || !strings.Contains(err.Error(), "over 64 MiB") {
		t.Errorf("a stream past the bound: %v", err)
	}
}

// zeros is an endless stream of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
