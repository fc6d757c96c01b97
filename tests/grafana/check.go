// Command check reads Grafana dashboard JSON files and checks each against Grafana's schema as
// the Grafana Foundation SDK generates it from Grafana's own CUE (strict: an unknown field is an
// error), with the panel and query plugins the SDK knows registered. Built by build.sh beside it.
package main

import (
	"fmt"
	"os"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
)

func main() {
	plugins.RegisterDefaultPlugins()
	failed := false
	for _, path := range os.Args[1:] {
		raw, err := os.ReadFile(path)
		if err != nil {
			fmt.Printf("%s: %v\n", path, err)
			failed = true
			continue
		}
		var d dashboard.Dashboard
		if err := orNil(d.UnmarshalJSONStrict(raw)); err != nil {
			fmt.Printf("%s: not a dashboard by the schema: %v\n", path, err)
			failed = true
			continue
		}
		if err := orNil(d.Validate()); err != nil {
			fmt.Printf("%s: invalid: %v\n", path, err)
			failed = true
			continue
		}
		fmt.Printf("%s: valid, %d panels\n", path, len(d.Panels))
	}
	if failed {
		os.Exit(1)
	}
}

// orNil: the SDK returns an empty cog.BuildErrors, a non-nil error value, when all is well.
func orNil(err error) error {
	if errs, ok := err.(cog.BuildErrors); ok && len(errs) == 0 {
		return nil
	}
	return err
}
