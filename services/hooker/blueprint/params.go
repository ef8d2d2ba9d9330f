package blueprint

// Params is the data templates are rendered against. Field names and types
// follow Kanister's TemplateParams so that existing blueprints render
// unchanged; Kanister's ActionSet-only fields (ArtifactsIn, Profile, PVC,
// DeploymentConfig, top-level Secrets/ConfigMaps) have no equivalent in
// freezeframe and are left out, so a template using them fails to render
// instead of rendering empty.
type Params struct {
	Deployment  *WorkloadParams // set when the workload is a Deployment
	StatefulSet *WorkloadParams // set when the workload is a StatefulSet
	Namespace   NamespaceParams // .Namespace.Name
	Object      map[string]any  // the workload object, unstructured
	// Time is the time of the action. Kanister uses the UTC time in
	// RFC3339Nano, which templates parse with
	// toDate "2006-01-02T15:04:05.999999999Z07:00".
	Time    string
	Options map[string]string
	// Phases holds, per phase name, the objects fetched for the phase (before
	// its args are rendered) and its output (after it ran).
	Phases map[string]*PhaseParams
	// DeferPhase holds the defer phase's output, as Kanister's .DeferPhase.
	// Its objects go in Phases under its name, like any other phase.
	DeferPhase *PhaseParams
}

// WorkloadParams describes a Deployment or StatefulSet, as Kanister's
// DeploymentParams and StatefulSetParams.
type WorkloadParams struct {
	Name      string
	Namespace string
	Pods      []string
	// Containers lists the container names of each pod, in the order of Pods.
	Containers [][]string
	// PersistentVolumeClaims maps pod name to claim name to mount path.
	PersistentVolumeClaims map[string]map[string]string
}

// NamespaceParams describes the workload's namespace.
type NamespaceParams struct {
	Name string
}

// PhaseParams is what one phase contributes to the templates of the phases
// after it (and to its own, for objects).
type PhaseParams struct {
	Secrets    map[string]Secret    // by object alias
	ConfigMaps map[string]ConfigMap // by object alias
	Output     map[string]any       // from ParseOutput
}

// Secret is the part of a core/v1 Secret that templates read. Data holds the
// decoded bytes, as in the Kubernetes API type, so blueprints written for
// Kanister keep piping values through toString.
type Secret struct {
	Name      string
	Namespace string
	Type      string
	Data      map[string][]byte
}

// ConfigMap is the part of a core/v1 ConfigMap that templates read.
type ConfigMap struct {
	Name       string
	Namespace  string
	Data       map[string]string
	BinaryData map[string][]byte
}

// SecretValues returns every Secret value in p (Phases and DeferPhase). Pass
// it to Redact before logging a rendered command or a command's output: a
// hook command usually carries a password.
func (p Params) SecretValues() [][]byte {
	var out [][]byte
	add := func(pp *PhaseParams) {
		if pp == nil {
			return
		}
		for _, s := range pp.Secrets {
			for _, v := range s.Data {
				if len(v) > 0 {
					out = append(out, v)
				}
			}
		}
	}
	for _, pp := range p.Phases {
		add(pp)
	}
	add(p.DeferPhase)
	return out
}
