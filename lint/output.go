package lint

import (
	"encoding/json"
	"io"
	"net/url"
	"path/filepath"
)

// jsonFinding is the JSON Lines form of a finding: the fields of check's
// JSON output, with where the image was found.
type jsonFinding struct {
	File      string `json:"file"`
	Line      int    `json:"line"`
	Source    string `json:"source"`
	Input     string `json:"input"`
	Reference string `json:"reference"`
	Allowed   bool   `json:"allowed"`
	Rule      string `json:"rule"`
	Reason    string `json:"reason"`
	Resembles string `json:"resembles,omitempty"`
}

// WriteJSON writes one JSON object a finding, a line each.
func WriteJSON(w io.Writer, findings []Finding) error {
	enc := json.NewEncoder(w)
	for _, f := range findings {
		d := f.Decision
		if err := enc.Encode(jsonFinding{
			File: f.File, Line: f.Line, Source: f.Source, Input: f.Input,
			Reference: d.Reference, Allowed: d.Allowed, Rule: d.RuleSource(),
			Reason: d.Reason, Resembles: d.Resembles,
		}); err != nil {
			return err
		}
	}
	return nil
}

// SARIF 2.1.0, as much of it as GitHub code scanning reads: one run, the
// tool's two rules, and a result for each denial with its location.
type sarifLog struct {
	Schema  string     `json:"$schema"`
	Version string     `json:"version"`
	Runs    []sarifRun `json:"runs"`
}

type sarifRun struct {
	Tool    sarifTool     `json:"tool"`
	Results []sarifResult `json:"results"`
}

type sarifTool struct {
	Driver sarifDriver `json:"driver"`
}

type sarifDriver struct {
	Name           string      `json:"name"`
	Version        string      `json:"version,omitempty"`
	InformationURI string      `json:"informationUri"`
	Rules          []sarifRule `json:"rules"`
}

type sarifText struct {
	Text string `json:"text"`
}

type sarifRule struct {
	ID                   string       `json:"id"`
	Name                 string       `json:"name"`
	ShortDescription     sarifText    `json:"shortDescription"`
	FullDescription      sarifText    `json:"fullDescription"`
	Help                 sarifText    `json:"help"`
	DefaultConfiguration sarifDefault `json:"defaultConfiguration"`
}

type sarifDefault struct {
	Level string `json:"level"`
}

type sarifResult struct {
	RuleID    string          `json:"ruleId"`
	RuleIndex int             `json:"ruleIndex"`
	Level     string          `json:"level"`
	Message   sarifText       `json:"message"`
	Locations []sarifLocation `json:"locations"`
}

type sarifLocation struct {
	PhysicalLocation sarifPhysical `json:"physicalLocation"`
}

type sarifPhysical struct {
	ArtifactLocation sarifArtifact `json:"artifactLocation"`
	Region           sarifRegion   `json:"region"`
}

type sarifArtifact struct {
	URI       string `json:"uri"`
	URIBaseID string `json:"uriBaseId,omitempty"`
}

type sarifRegion struct {
	StartLine int `json:"startLine"`
}

// The rules a SARIF result names: a reference the policy denies, and one
// that could not be worked out (and so is denied).
var sarifRules = []sarifRule{{
	ID:                   "image-not-allowed",
	Name:                 "ImageNotAllowed",
	ShortDescription:     sarifText{"The image is not allowed by the pullguard policy"},
	FullDescription:      sarifText{"The policy the hosts enforce denies this image: a build or deployment that pulls it would be blocked or have it removed."},
	Help:                 sarifText{"Use an image the policy allows (run `pullguard check REF` to see why), or ask the policy's owners for an allow rule."},
	DefaultConfiguration: sarifDefault{"error"},
}, {
	ID:                   "image-unresolved",
	Name:                 "ImageUnresolved",
	ShortDescription:     sarifText{"The image cannot be worked out, so it is denied"},
	FullDescription:      sarifText{"The reference depends on an ARG or variable without a value here, on a construct the builder rejects, or on an ARG expansion past lint's bounds; or the file is a link lint does not follow (out of the tree, a loop, nowhere). pullguard fails closed."},
	Help:                 sarifText{"Give the ARG a default, or pass its CI value with --build-arg NAME=VALUE. Replace a link that leaves the repository with the file itself."},
	DefaultConfiguration: sarifDefault{"error"},
}}

// WriteSARIF writes a SARIF 2.1.0 log with one result for each denial.
// Allowed images are not results: code scanning shows results as alerts.
func WriteSARIF(w io.Writer, version string, findings []Finding) error {
	results := []sarifResult{}
	for _, f := range findings {
		if f.Decision.Allowed {
			continue
		}
		idx := 0
		if f.Unresolved {
			idx = 1
		}
		line := f.Line
		if line < 1 {
			line = 1
		}
		results = append(results, sarifResult{
			RuleID: sarifRules[idx].ID, RuleIndex: idx, Level: "error",
			Message: sarifText{sarifMessage(f)},
			Locations: []sarifLocation{{PhysicalLocation: sarifPhysical{
				ArtifactLocation: artifact(f.File),
				Region:           sarifRegion{StartLine: line},
			}}},
		})
	}
	log := sarifLog{
		Schema:  "https://json.schemastore.org/sarif-2.1.0.json",
		Version: "2.1.0",
		Runs: []sarifRun{{
			Tool: sarifTool{Driver: sarifDriver{
				Name: "pullguard", Version: version,
				InformationURI: "https://github.com/pullguard/pullguard",
				Rules:          sarifRules,
			}},
			Results: results,
		}},
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(log)
}

// sarifMessage is the denial as the authorization plugin words it, after
// what named the image and, when it differs, the image as written.
func sarifMessage(f Finding) string {
	msg := f.Source
	if d := f.Decision; d.Reference != "" && f.Input != d.Reference {
		msg += " " + f.Input
	}
	return msg + ": " + f.Decision.Err().Error()
}

// artifact names a file as code scanning expects: a relative path, with
// forward slashes, against the checkout's root.
func artifact(file string) sarifArtifact {
	path := filepath.ToSlash(filepath.Clean(file))
	if filepath.IsAbs(file) {
		return sarifArtifact{URI: (&url.URL{Scheme: "file", Path: path}).String()}
	}
	return sarifArtifact{URI: (&url.URL{Path: path}).EscapedPath(), URIBaseID: "%SRCROOT%"}
}
