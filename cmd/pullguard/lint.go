package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/pullguard/pullguard/lint"
)

// stdinName is what findings call standard input.
const stdinName = "stdin"

func newLintCmd() *cobra.Command {
	var (
		pf        policyFlags
		output    string
		typ       string
		buildArgs []string
	)
	cmd := &cobra.Command{
		Use:   "lint [flags] PATH... | --type KIND -",
		Short: "Judge the images Dockerfiles, Compose files and Kubernetes manifests would pull",
		Long: `lint finds every image a repository will pull — Dockerfile FROM, COPY --from and
RUN --mount from= (after ARG expansion), Compose services.*.image, and the
containers, initContainers and ephemeralContainers of Kubernetes workloads —
and judges each with the policy, exactly as check does.

A directory is walked recursively (.git, vendor and node_modules skipped):
Dockerfile, *.Dockerfile, Dockerfile.*, Containerfile, compose*.y*ml and
docker-compose*.y*ml by name, and any other *.yaml or *.yml that holds
Kubernetes objects. "-" reads standard input; --type says what it is.

A link named like an input is linted when it leads to a file inside the
directory walked. One that leads out of it (or a link to a directory outside
it), loops or leads nowhere is a finding of its own: lint cannot see what the
build would read there. ARG expansion is bounded: an expansion of more than
4 KiB, or 1 MiB for a whole Dockerfile, is refused as unresolved. A file over
64 MiB is not read.

Exit status: 0 if every image is allowed, 1 if any is denied or cannot be
worked out, 2 on a usage or policy error, a file that cannot be parsed, or
when stopped by SIGINT or SIGTERM.`,
		Example: `  pullguard lint .
  pullguard lint --build-arg BASE_TAG=1.25 --output sarif . > pullguard.sarif
  helm template ./chart | pullguard lint --type kubernetes -`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if output != "text" && output != "json" && output != "sarif" {
				return usageError("--output must be text, json or sarif, not %q", output)
			}
			var kind lint.Kind
			if typ != "" {
				k, err := lint.ParseKind(typ)
				if err != nil {
					return usageError("--type: %v", err)
				}
				kind = k
			}
			bargs, err := parseBuildArgs(buildArgs)
			if err != nil {
				return usageError("%v", err)
			}
			var files []string
			stdin := false
			for _, a := range args {
				if a == "-" {
					stdin = true
				} else {
					files = append(files, a)
				}
			}
			if stdin && kind == "" {
				return usageError("reading standard input needs --type dockerfile, compose or kubernetes")
			}
			inputs, err := lint.Collect(ctx, files, kind)
			if ctx.Err() != nil {
				return stopped(ctx)
			}
			if err != nil {
				return usageError("%v", printable(err.Error()))
			}
			p, err := pf.load()
			if err != nil {
				return &exitError{code: exitUsage, err: err}
			}
			l := &lint.Linter{Policy: p, Now: time.Now(), BuildArgs: bargs}

			var findings []lint.Finding
			var parseErrs []error
			if stdin {
				data, err := readAll(ctx, cmd.InOrStdin())
				if ctx.Err() != nil {
					return stopped(ctx)
				}
				if err != nil {
					return usageError("reading standard input: %v", err)
				}
				fs, err := l.Lint(ctx, stdinName, kind, data)
				if err != nil {
					parseErrs = append(parseErrs, err)
				}
				findings = fs
			}
			fs, errs := l.LintAll(ctx, inputs)
			if ctx.Err() != nil {
				return stopped(ctx)
			}
			findings = append(findings, fs...)
			for _, err := range errs {
				var skipped *lint.Skipped
				if errors.As(err, &skipped) {
					fmt.Fprintln(cmd.ErrOrStderr(), "pullguard: note:", printable(skipped.Error()))
				} else {
					// A message names the file and may quote it.
					parseErrs = append(parseErrs, errors.New(printable(err.Error())))
				}
			}
			if !stdin && len(inputs) == 0 {
				// Not an error (a repository may have nothing to lint yet),
				// but a CI job pointed at the wrong path should not pass
				// without a word.
				names := make([]string, len(files))
				for i, f := range files {
					names[i] = printable(f)
				}
				fmt.Fprintln(cmd.ErrOrStderr(), "pullguard: note: no Dockerfile, Compose file or Kubernetes manifest found in", strings.Join(names, ", "))
			}
			if err := writeFindings(cmd.OutOrStdout(), output, findings); err != nil {
				return err
			}
			if len(parseErrs) > 0 {
				return &exitError{code: exitUsage, err: errors.Join(parseErrs...)}
			}
			for _, f := range findings {
				if !f.Decision.Allowed {
					return &exitError{code: exitDenied}
				}
			}
			return nil
		},
	}
	pf.register(cmd.Flags())
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text, json (one object a line) or sarif (SARIF 2.1.0)")
	cmd.Flags().StringVar(&typ, "type", "", "what standard input and the files named are: dockerfile, compose or kubernetes")
	cmd.Flags().StringArrayVar(&buildArgs, "build-arg", nil, "NAME=VALUE for a Dockerfile ARG, as the build will pass it (repeatable)")
	return cmd
}

// parseBuildArgs reads NAME=VALUE pairs. As with docker build, a NAME
// without "=" is not accepted: lint has no environment to take it from.
func parseBuildArgs(args []string) (map[string]string, error) {
	out := map[string]string{}
	for _, a := range args {
		name, value, ok := strings.Cut(a, "=")
		if !ok || name == "" {
			return nil, fmt.Errorf("--build-arg %q: want NAME=VALUE", a)
		}
		out[name] = value
	}
	return out, nil
}

// stopped is lint's outcome when CI cancels it: no verdict, and a status
// that is not success.
func stopped(ctx context.Context) error {
	return &exitError{code: exitUsage, err: fmt.Errorf("lint stopped before it finished (%v): nothing was judged", context.Cause(ctx))}
}

// readAll reads r to its end (within lint's bound on an input), or until
// ctx is cancelled: a pipe that never closes must not keep lint from
// stopping.
func readAll(ctx context.Context, r io.Reader) ([]byte, error) {
	type result struct {
		data []byte
		err  error
	}
	done := make(chan result, 1)
	go func() {
		data, err := lint.ReadInput(r)
		done <- result{data, err}
	}()
	select {
	case res := <-done:
		return res.data, res.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// writeFindings prints the findings. Text is check's line for each
// decision, after the file and line (none for a finding about a whole
// file) and followed by what named the image.
func writeFindings(w io.Writer, format string, findings []lint.Finding) error {
	switch format {
	case "json":
		return lint.WriteJSON(w, findings)
	case "sarif":
		return lint.WriteSARIF(w, buildVersion(), findings)
	}
	bw := bufio.NewWriter(w)
	var line strings.Builder
	for _, f := range findings {
		line.Reset()
		if err := writeDecision(&line, "text", f.Decision); err != nil {
			return err
		}
		bw.WriteString(printable(f.File))
		if f.Line > 0 {
			fmt.Fprintf(bw, ":%d", f.Line)
		}
		fmt.Fprintf(bw, ": %s [%s %s]\n", printable(strings.TrimSuffix(line.String(), "\n")), printable(f.Source), printable(f.Input))
	}
	return bw.Flush()
}

// printable returns s unchanged when every character in it prints, and
// otherwise quoted as Go quotes it ("a\nb", "\x1b[2J"): a file name, or
// anything a repository writes, cannot forge a line of lint's text output
// or drive the terminal showing it. JSON and SARIF escape on their own.
func printable(s string) string {
	for _, r := range s {
		if r == utf8.RuneError || !strconv.IsPrint(r) {
			return strconv.Quote(s)
		}
	}
	return s
}
