package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"time"

	"github.com/spf13/cobra"

	"github.com/pullguard/pullguard/daemon/metrics"
)

func newStatusCmd() *cobra.Command {
	var socket, output string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show what the running daemon is doing",
		Long: `status asks the running daemon, over its root-only status socket, for its
state and shows it on one screen: the mode, the policy in force (hash, files,
rule counts), the last reload and whether it failed, each runtime's
connection and last reconcile, and counts of actions taken.

Exit status: 0 the daemon answered, 2 it could not be reached.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "text" && output != "json" {
				return usageError("--output must be text or json, not %q", output)
			}
			st, err := fetchStatus(cmd.Context(), socket)
			if err != nil {
				return usageError("%v", err)
			}
			if output == "json" {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(st)
			}
			return st.Render(cmd.OutOrStdout(), time.Now())
		},
	}
	cmd.Flags().StringVar(&socket, "status-socket", metrics.DefaultStatusSocket, "the daemon's status socket")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text or json")
	return cmd
}

func fetchStatus(ctx context.Context, socket string) (metrics.Status, error) {
	var st metrics.Status
	c := &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		}},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://pullguard/status", nil)
	if err != nil {
		return st, err
	}
	resp, err := c.Do(req)
	if err != nil {
		if errors.Is(err, fs.ErrPermission) {
			return st, fmt.Errorf("%s: permission denied (the status socket is root's)", socket)
		}
		return st, fmt.Errorf("is the daemon running? %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("%s answered %s", socket, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return st, fmt.Errorf("reading the status from %s: %w", socket, err)
	}
	return st, nil
}
