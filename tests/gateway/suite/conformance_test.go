// The Gateway API conformance suite (sigs.k8s.io/gateway-api/conformance, the version go.mod
// pins) as implementations run it: the suite's own flags (--gateway-class,
// --conformance-profiles, --report-output, ...), built into a test binary by
// tests/gateway/build.sh and run by tests/gateway/conformance.sh.
//
// One change to the suite's manifests: the CoreDNS its base manifests deploy forwards every
// name it does not serve to 8.8.8.8 and 9.9.9.9; here that forward line is removed, so that
// nothing in the cluster sends queries off the machine (the harness's network rule).
package conformance_test

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/gateway-api/conformance"
	confv1 "sigs.k8s.io/gateway-api/conformance/apis/v1"
	"sigs.k8s.io/gateway-api/conformance/utils/suite"
	"sigs.k8s.io/gateway-api/pkg/features"
	"sigs.k8s.io/yaml"
)

const baseManifests = "base/manifests.yaml"

// Ours, beside the suite's flags: a Markdown summary of the report --report-output names.
var summaryOutput = flag.String("summary-output", "", "where to write a Markdown summary of the conformance report (needs --report-output)")

// The line dropped from the base manifests' Corefile.
var forward = []byte("forward . 8.8.8.8 9.9.9.9")

func TestConformance(t *testing.T) {
	base, err := fs.ReadFile(conformance.Manifests, baseManifests)
	if err != nil {
		t.Fatalf("the suite's %s: %v", baseManifests, err)
	}
	if !bytes.Contains(base, forward) {
		t.Fatalf("the suite's %s no longer has %q: look at its CoreDNS again", baseManifests, forward)
	}
	opts := conformance.DefaultOptions(t)
	if *summaryOutput != "" && opts.ReportOutputPath != "" {
		// Cleanups run last registered first: this one after the suite's, which writes the report.
		report := opts.ReportOutputPath
		t.Cleanup(func() {
			if err := writeSummary(report, *summaryOutput); err != nil {
				t.Errorf("summary of %s: %v", report, err)
			}
		})
	}
	opts.ManifestFS = []fs.FS{patched{conformance.Manifests, map[string][]byte{
		baseManifests: bytes.Replace(base, forward, nil, 1),
	}}}
	conformance.RunConformanceWithOptions(t, opts)
}

// TestProfileFeatures prints, comma-separated, every feature (core and extended) of the
// profiles named in $PROFILES (comma-separated): what --supported-features must list to run
// all of their tests when the GatewayClass does not publish its supportedFeatures. With
// $CHANNEL=standard, the features of the experimental channel are left out (their tests use
// fields the standard CRDs do not have). Only runs when asked for (-test.run TestProfileFeatures).
func TestProfileFeatures(t *testing.T) {
	names := os.Getenv("PROFILES")
	if names == "" {
		t.Skip("PROFILES is not set")
	}
	experimental := map[features.FeatureName]bool{}
	for _, f := range features.AllFeatures.UnsortedList() {
		experimental[f.Name] = f.Channel == features.FeatureChannelExperimental
	}
	standardOnly := os.Getenv("CHANNEL") == "standard"
	profiles := map[string]suite.ConformanceProfile{}
	for _, p := range []suite.ConformanceProfile{
		suite.GatewayHTTPConformanceProfile,
		suite.GatewayGRPCConformanceProfile,
		suite.GatewayTLSConformanceProfile,
		suite.GatewayTCPConformanceProfile,
		suite.GatewayUDPConformanceProfile,
	} {
		profiles[string(p.Name)] = p
	}
	var all []string
	for _, name := range strings.Split(names, ",") {
		profile, ok := profiles[strings.TrimSpace(name)]
		if !ok {
			t.Fatalf("no Gateway conformance profile %q", name)
		}
		for _, f := range profile.CoreFeatures.Union(profile.ExtendedFeatures).UnsortedList() {
			if !standardOnly || !experimental[f] {
				all = append(all, string(f))
			}
		}
	}
	slices.Sort(all)
	fmt.Println("FEATURES=" + strings.Join(slices.Compact(all), ","))
}

// writeSummary writes, per profile, the core and extended results with their counts, the
// failed tests and the extended features claimed and not claimed.
func writeSummary(reportPath, out string) error {
	data, err := os.ReadFile(reportPath)
	if err != nil {
		return err
	}
	var r confv1.ConformanceReport
	if err := yaml.Unmarshal(data, &r); err != nil {
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Gateway API %s (%s channel), %s %s, mode %s, run %s.\n\n",
		r.GatewayAPIVersion, r.GatewayAPIChannel, r.Project, r.Version, r.Mode, r.Date)
	if len(r.ProfileReports) == 0 {
		b.WriteString("The report has no profile results: the suite stopped before running any test (see its output).\n")
	} else {
		b.WriteString("| Profile | Tests | Result | Passed | Failed | Skipped |\n|---|---|---|---|---|---|\n")
	}
	row := func(profile, kind string, s confv1.Status) {
		fmt.Fprintf(&b, "| %s | %s | %s | %d | %d | %d |\n", profile, kind, s.Result, s.Passed, s.Failed, s.Skipped)
	}
	for _, p := range r.ProfileReports {
		row(p.Name, "core", p.Core)
		if p.Extended != nil {
			row(p.Name, "extended", p.Extended.Status)
		}
	}
	list := func(title string, items []string) {
		if len(items) > 0 {
			fmt.Fprintf(&b, "- %s (%d): %s\n", title, len(items), strings.Join(items, ", "))
		}
	}
	for _, p := range r.ProfileReports {
		fmt.Fprintf(&b, "\n### %s\n\n", p.Name)
		if p.Summary != "" {
			fmt.Fprintf(&b, "%s\n\n", p.Summary)
		}
		list("core tests failed", p.Core.FailedTests)
		list("core tests skipped", p.Core.SkippedTests)
		if p.Extended != nil {
			list("extended tests failed", p.Extended.FailedTests)
			list("extended tests skipped", p.Extended.SkippedTests)
			list("extended features claimed", p.Extended.SupportedFeatures)
			list("extended features not claimed", p.Extended.UnsupportedFeatures)
		}
	}
	return os.WriteFile(out, []byte(b.String()), 0o644)
}

// patched serves some files from memory and the rest from the suite's embedded manifests.
type patched struct {
	fs.FS
	files map[string][]byte
}

func (p patched) Open(name string) (fs.File, error) {
	if data, ok := p.files[name]; ok {
		return &memFile{name: name, Reader: bytes.NewReader(data)}, nil
	}
	return p.FS.Open(name)
}

type memFile struct {
	name string
	*bytes.Reader
}

func (f *memFile) Stat() (fs.FileInfo, error) { return f, nil }
func (f *memFile) Close() error               { return nil }
func (f *memFile) Name() string               { return f.name }
func (f *memFile) Mode() fs.FileMode          { return 0o444 }
func (f *memFile) ModTime() time.Time         { return time.Time{} }
func (f *memFile) IsDir() bool                { return false }
func (f *memFile) Sys() any                   { return nil }

var _ io.ReaderAt = (*memFile)(nil)
