// Package deploy tests the Helm chart in deploy/helm/freezeframe against the sandbox: it
// builds helm from the Go module proxy (deploy/helm/build-helm.sh), renders the chart into
// objects, and runs the four service binaries as separate processes, each with a
// kubeconfig holding its own ServiceAccount's token, so the chart's RBAC is what they get.
//
// # The NATS dependency
//
// The chart depends on the NATS project's chart (condition nats.enabled). Rendering needs
// it in the chart's charts/ directory even when disabled. PrepareChart copies the chart to
// a temporary directory and puts the dependency there: from FREEZEFRAME_NATS_CHART (a
// directory holding the upstream chart) when set, else from the Go module proxy (module
// github.com/nats-io/k8s, which holds the chart under helm/charts/nats), else a stand-in
// with the same name and no templates, so that the chart's own templates are still
// rendered and checked with the production values. Which one was used is reported.
package deploy
