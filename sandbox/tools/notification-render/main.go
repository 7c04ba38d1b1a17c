// Renders an Argo Rollouts notification template exactly as the Rollouts controller does, for
// tests: the controller's notification engine (github.com/argoproj/notifications-engine
// pkg/templates/service.go and pkg/services/webhook.go, commit cf274d2e) parses each webhook body
// with text/template and sprig v3's TxtFuncMap() minus env and expandenv, and executes it with the
// variables {"rollout": <the Rollout object>, ...}.
//
// Usage: notification-render TEMPLATE_FILE VARS_JSON_FILE  (the rendered body on stdout)
package main

import (
	"encoding/json"
	"fmt"
	"os"
	texttemplate "text/template"

	"github.com/Masterminds/sprig/v3"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: notification-render TEMPLATE_FILE VARS_JSON_FILE")
		os.Exit(2)
	}
	text, err := os.ReadFile(os.Args[1])
	if err != nil {
		fail(err)
	}
	raw, err := os.ReadFile(os.Args[2])
	if err != nil {
		fail(err)
	}
	var vars map[string]any
	if err := json.Unmarshal(raw, &vars); err != nil {
		fail(err)
	}
	f := sprig.TxtFuncMap()
	delete(f, "env")
	delete(f, "expandenv")
	body, err := texttemplate.New("dora-collector").Funcs(f).Parse(string(text))
	if err != nil {
		fail(err)
	}
	if err := body.Execute(os.Stdout, vars); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}
