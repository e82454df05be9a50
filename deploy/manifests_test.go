// Package deploy_test checks the deployment files in this directory: the
// Kubernetes manifests under kubernetes/ (decoded strictly into the
// k8s.io/api types, so a misspelt field fails), the gateway config they
// carry, the Prometheus scrape snippet, and the repository's Dockerfile
// (read as text: no Docker engine is needed). TestChecksCatchBreakage breaks
// a copy of each file in the way each check is meant to catch and asserts
// that the check reports it.
package deploy_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

const (
	kubernetesDir  = "kubernetes"
	prometheusFile = "prometheus/scrape.yaml"
	dockerfilePath = "../Dockerfile"
	dockerignore   = "../.dockerignore"
	goModPath      = "../go.mod"

	// The numeric user every container runs as (distroless "nonroot").
	runtimeUID = 65532
	// The Secret holding upstream API keys; it is not shipped, so every
	// reference to it must be optional.
	upstreamSecret = "stepflash-upstream"
	// The Secret that may hold the gateway's Postgres DSN (key dsn, read as
	// $STEPFLASH_DB); not shipped either, so its references are optional.
	dbSecret, dbSecretKey = "stepflash-db", "dsn"
	// The name a stepflash engine serves its first model under as well
	// (server.DefaultModelName).
	defaultModelName = "step-3.7-flash"
	// The shortest startup-probe budget for a container that pulls or loads
	// a model before it is ready.
	minModelStartup = 15 * time.Minute
)

// ---- loading ---------------------------------------------------------------

// kustomization is the part of kustomize's Kustomization that these
// manifests use; decoding is strict, so any other field fails.
type kustomization struct {
	APIVersion string           `json:"apiVersion"`
	Kind       string           `json:"kind"`
	Namespace  string           `json:"namespace"`
	Resources  []string         `json:"resources"`
	Images     []kustomizeImage `json:"images,omitempty"`
}

type kustomizeImage struct {
	Name    string `json:"name"`
	NewName string `json:"newName,omitempty"`
	NewTag  string `json:"newTag,omitempty"`
	Digest  string `json:"digest,omitempty"`
}

// object is one decoded manifest document.
type object struct {
	file string // path relative to the variant directory
	doc  int    // index of the document in its file
	kind string
	obj  any // *corev1.Service, *appsv1.Deployment, ...
}

// variant is one directory under kubernetes/ applied with kubectl apply -k.
type variant struct {
	name    string
	kust    kustomization
	objects []object
}

// typeMeta reads apiVersion and kind before the strict decode.
type typeMeta struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
}

// newObject returns an empty typed object for apiVersion and kind; the kinds
// not listed here are rejected.
func newObject(apiVersion, kind string) (any, error) {
	switch apiVersion + " " + kind {
	case "v1 Namespace":
		return &corev1.Namespace{}, nil
	case "v1 Service":
		return &corev1.Service{}, nil
	case "v1 ConfigMap":
		return &corev1.ConfigMap{}, nil
	case "apps/v1 Deployment":
		return &appsv1.Deployment{}, nil
	case "apps/v1 StatefulSet":
		return &appsv1.StatefulSet{}, nil
	case "policy/v1 PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}, nil
	}
	return nil, fmt.Errorf("unknown kind %q (apiVersion %q): add it to newObject or fix the manifest", kind, apiVersion)
}

var docSeparator = regexp.MustCompile(`(?m)^---[ \t]*$`)

// splitDocuments splits a multi-document YAML file and drops documents that
// hold only comments and blank lines.
func splitDocuments(data []byte) [][]byte {
	var docs [][]byte
	for _, d := range docSeparator.Split(string(data), -1) {
		empty := true
		for _, line := range strings.Split(d, "\n") {
			if l := strings.TrimSpace(line); l != "" && !strings.HasPrefix(l, "#") {
				empty = false
				break
			}
		}
		if !empty {
			docs = append(docs, []byte(d))
		}
	}
	return docs
}

// decodeStrict decodes YAML into v as the API server's strict field
// validation does: duplicate keys, unknown fields and fields spelt in another
// case are errors. (sigs.k8s.io/yaml.UnmarshalStrict alone goes through
// encoding/json, which matches field names case-insensitively, so it would
// accept "readOnlyRootFileSystem".)
func decodeStrict(data []byte, v any) error {
	j, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return err
	}
	strictErrs, err := sigsjson.UnmarshalStrict(j, v, sigsjson.DisallowDuplicateFields, sigsjson.DisallowUnknownFields)
	if err != nil {
		return err
	}
	return errors.Join(strictErrs...)
}

// decodeManifest strictly decodes every document of one manifest file.
func decodeManifest(file string, data []byte) ([]object, error) {
	var objs []object
	for i, doc := range splitDocuments(data) {
		var tm typeMeta
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			return nil, fmt.Errorf("%s: document %d: %v", file, i, err)
		}
		if tm.APIVersion == "" || tm.Kind == "" {
			return nil, fmt.Errorf("%s: document %d: no apiVersion or kind", file, i)
		}
		obj, err := newObject(tm.APIVersion, tm.Kind)
		if err != nil {
			return nil, fmt.Errorf("%s: document %d: %v", file, i, err)
		}
		if err := decodeStrict(doc, obj); err != nil {
			return nil, fmt.Errorf("%s: document %d (%s): %v", file, i, tm.Kind, err)
		}
		objs = append(objs, object{file: file, doc: i, kind: tm.Kind, obj: obj})
	}
	if len(objs) == 0 {
		return nil, fmt.Errorf("%s: no documents", file)
	}
	return objs, nil
}

// decodeKustomization strictly decodes a kustomization.yaml.
func decodeKustomization(data []byte) (kustomization, error) {
	var k kustomization
	if err := decodeStrict(data, &k); err != nil {
		return k, fmt.Errorf("kustomization.yaml: %v", err)
	}
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
		return k, fmt.Errorf("kustomization.yaml: apiVersion/kind %q/%q, want kustomize.config.k8s.io/v1beta1/Kustomization", k.APIVersion, k.Kind)
	}
	if k.Namespace == "" {
		return k, errors.New("kustomization.yaml: no namespace")
	}
	if len(k.Resources) == 0 {
		return k, errors.New("kustomization.yaml: no resources")
	}
	return k, nil
}

// loadVariant reads a variant from fsys (rooted at the variant directory):
// its kustomization.yaml, each listed resource, and nothing else; a YAML file
// the kustomization does not list is an error, since kubectl apply -k would
// silently leave it out.
func loadVariant(name string, fsys fs.FS) (*variant, error) {
	kdata, err := fs.ReadFile(fsys, "kustomization.yaml")
	if err != nil {
		return nil, fmt.Errorf("%s: %v", name, err)
	}
	k, err := decodeKustomization(kdata)
	if err != nil {
		return nil, fmt.Errorf("%s/%v", name, err)
	}
	v := &variant{name: name, kust: k}
	listed := map[string]bool{}
	for _, r := range k.Resources {
		clean := path.Clean(r)
		if listed[clean] {
			return nil, fmt.Errorf("%s: resource %s listed twice", name, r)
		}
		listed[clean] = true
		st, err := fs.Stat(fsys, clean)
		if err != nil {
			return nil, fmt.Errorf("%s: kustomization.yaml lists %s: %v", name, r, err)
		}
		if st.IsDir() {
			return nil, fmt.Errorf("%s: kustomization.yaml lists directory %s; list its files", name, r)
		}
		data, err := fs.ReadFile(fsys, clean)
		if err != nil {
			return nil, err
		}
		objs, err := decodeManifest(name+"/"+clean, data)
		if err != nil {
			return nil, err
		}
		v.objects = append(v.objects, objs...)
	}
	err = fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || p == "kustomization.yaml" {
			return nil
		}
		if ext := path.Ext(p); ext != ".yaml" && ext != ".yml" {
			return fmt.Errorf("%s: %s: only YAML manifests belong in a variant directory", name, p)
		}
		if !listed[p] {
			return fmt.Errorf("%s: %s is not listed in kustomization.yaml resources", name, p)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return v, nil
}

// variantNames lists the variant directories under kubernetes/, failing on a
// manifest that lies outside them.
func variantNames(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir(kubernetesDir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if !e.IsDir() {
			t.Errorf("%s/%s: manifests belong in a variant directory with a kustomization.yaml", kubernetesDir, e.Name())
			continue
		}
		names = append(names, e.Name())
	}
	if len(names) == 0 {
		t.Fatal("no variants under " + kubernetesDir)
	}
	return names
}

func mustLoad(t *testing.T, name string) *variant {
	t.Helper()
	v, err := loadVariant(name, os.DirFS(filepath.Join(kubernetesDir, name)))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// ---- accessors ---------------------------------------------------------------

// workload is a Deployment or StatefulSet seen through what the checks need.
type workload struct {
	kind, name, namespace string
	replicas              int32
	selector              map[string]string // matchLabels
	selectorExpressions   int
	template              *corev1.PodTemplateSpec
	claims                []string // volumeClaimTemplates names
	serviceName           string   // StatefulSet's governing Service
}

func (w workload) String() string { return w.kind + " " + w.name }

func (v *variant) workloads() []workload {
	var ws []workload
	for _, o := range v.objects {
		switch x := o.obj.(type) {
		case *appsv1.Deployment:
			w := workload{kind: "Deployment", name: x.Name, namespace: x.Namespace, replicas: 1, template: &x.Spec.Template}
			if x.Spec.Replicas != nil {
				w.replicas = *x.Spec.Replicas
			}
			if x.Spec.Selector != nil {
				w.selector = x.Spec.Selector.MatchLabels
				w.selectorExpressions = len(x.Spec.Selector.MatchExpressions)
			}
			ws = append(ws, w)
		case *appsv1.StatefulSet:
			w := workload{kind: "StatefulSet", name: x.Name, namespace: x.Namespace, replicas: 1, template: &x.Spec.Template, serviceName: x.Spec.ServiceName}
			if x.Spec.Replicas != nil {
				w.replicas = *x.Spec.Replicas
			}
			if x.Spec.Selector != nil {
				w.selector = x.Spec.Selector.MatchLabels
				w.selectorExpressions = len(x.Spec.Selector.MatchExpressions)
			}
			for _, c := range x.Spec.VolumeClaimTemplates {
				w.claims = append(w.claims, c.Name)
			}
			ws = append(ws, w)
		}
	}
	return ws
}

func (v *variant) services() []*corev1.Service {
	var out []*corev1.Service
	for _, o := range v.objects {
		if s, ok := o.obj.(*corev1.Service); ok {
			out = append(out, s)
		}
	}
	return out
}

func (v *variant) service(name string) *corev1.Service {
	for _, s := range v.services() {
		if s.Name == name {
			return s
		}
	}
	return nil
}

func (v *variant) configMap(name string) *corev1.ConfigMap {
	for _, o := range v.objects {
		if c, ok := o.obj.(*corev1.ConfigMap); ok && c.Name == name {
			return c
		}
	}
	return nil
}

func (v *variant) pdbs() []*policyv1.PodDisruptionBudget {
	var out []*policyv1.PodDisruptionBudget
	for _, o := range v.objects {
		if p, ok := o.obj.(*policyv1.PodDisruptionBudget); ok {
			out = append(out, p)
		}
	}
	return out
}

// selectedBy lists the workloads whose pods the label selector matches.
func (v *variant) selectedBy(selector map[string]string) []workload {
	var out []workload
	for _, w := range v.workloads() {
		if selects(selector, w.template.Labels) {
			out = append(out, w)
		}
	}
	return out
}

func isHeadless(s *corev1.Service) bool { return s.Spec.ClusterIP == corev1.ClusterIPNone }

// selects reports whether a non-empty equality selector matches labels.
func selects(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, val := range selector {
		if got, ok := labels[k]; !ok || got != val {
			return false
		}
	}
	return true
}

func allContainers(spec *corev1.PodSpec) []*corev1.Container {
	var out []*corev1.Container
	for i := range spec.InitContainers {
		out = append(out, &spec.InitContainers[i])
	}
	for i := range spec.Containers {
		out = append(out, &spec.Containers[i])
	}
	return out
}

// imageRepo is an image reference without its tag or digest.
func imageRepo(image string) string {
	if i := strings.Index(image, "@"); i >= 0 {
		image = image[:i]
	}
	if i := strings.LastIndex(image, ":"); i > strings.LastIndex(image, "/") {
		image = image[:i]
	}
	return image
}

// isStepflash reports whether a container runs the stepflash image.
func isStepflash(c *corev1.Container) bool { return path.Base(imageRepo(c.Image)) == "stepflash" }

func commandLine(c *corev1.Container) []string { return append(slices.Clone(c.Command), c.Args...) }

// flagValue returns the value of the first of names in args ("--f v" or "--f=v").
func flagValue(args []string, names ...string) (string, bool) {
	for i, a := range args {
		for _, n := range names {
			if a == n && i+1 < len(args) {
				return args[i+1], true
			}
			if v, ok := strings.CutPrefix(a, n+"="); ok {
				return v, true
			}
		}
	}
	return "", false
}

func flagValues(args []string, name string) []string {
	var out []string
	for i, a := range args {
		if a == name && i+1 < len(args) {
			out = append(out, args[i+1])
		} else if v, ok := strings.CutPrefix(a, name+"="); ok {
			out = append(out, v)
		}
	}
	return out
}

// isGateway: a stepflash container started with --config.
func isGateway(c *corev1.Container) bool {
	_, ok := flagValue(commandLine(c), "--config", "-config")
	return isStepflash(c) && ok
}

// loadsModel: a container that pulls or loads a model before it is ready.
func loadsModel(c *corev1.Container) bool {
	_, ok := flagValue(commandLine(c), "-m", "--model", "-model")
	return ok
}

// containerPort resolves a Service targetPort or probe port (a number or a
// port name) against one container.
func containerPort(c *corev1.Container, port string) (corev1.ContainerPort, bool) {
	n, err := strconv.Atoi(port)
	for _, p := range c.Ports {
		if (err == nil && int(p.ContainerPort) == n) || (err != nil && p.Name == port) {
			return p, true
		}
	}
	return corev1.ContainerPort{}, false
}

func protocolOr(p corev1.Protocol) corev1.Protocol {
	if p == "" {
		return corev1.ProtocolTCP
	}
	return p
}

func hasEnv(c *corev1.Container, name string) bool {
	return slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == name })
}

func envValue(c *corev1.Container, name string) (string, bool) {
	for _, e := range c.Env {
		if e.Name == name && e.ValueFrom == nil {
			return e.Value, true
		}
	}
	return "", false
}

func joinErrs(errs []error) string {
	var b strings.Builder
	for _, e := range errs {
		b.WriteString("\n\t")
		b.WriteString(e.Error())
	}
	return b.String()
}

// ---- checks on a variant -------------------------------------------------------

type variantCheck struct {
	name string
	fn   func(v *variant) []error
}

var variantChecks = []variantCheck{
	{"namespace", checkNamespace},
	{"selectors", checkSelectors},
	{"service ports", checkServicePorts},
	{"security context", checkSecurity},
	{"probes", checkProbes},
	{"images", checkImages},
	{"scrape annotations", checkScrapeAnnotations},
	{"resources", checkResources},
	{"env and volumes", checkEnvAndVolumes},
	{"data dir", checkDataDir},
	{"disruption budgets", checkDisruptionBudgets},
	{"gateway config", checkGatewayConfig},
}

// checkNamespace: a Namespace object named as the kustomization's namespace,
// and every other object in it.
func checkNamespace(v *variant) []error {
	var errs []error
	ns := v.kust.Namespace
	found := false
	for _, o := range v.objects {
		if n, ok := o.obj.(*corev1.Namespace); ok {
			if n.Name != ns {
				errs = append(errs, fmt.Errorf("%s: Namespace %q, but kustomization.yaml says %q", o.file, n.Name, ns))
			}
			found = true
			continue
		}
		var got string
		switch x := o.obj.(type) {
		case *corev1.Service:
			got = x.Namespace
		case *corev1.ConfigMap:
			got = x.Namespace
		case *appsv1.Deployment:
			got = x.Namespace
		case *appsv1.StatefulSet:
			got = x.Namespace
		case *policyv1.PodDisruptionBudget:
			got = x.Namespace
		}
		if got != ns {
			errs = append(errs, fmt.Errorf("%s: %s in namespace %q, want %q", o.file, o.kind, got, ns))
		}
	}
	if !found {
		errs = append(errs, fmt.Errorf("no Namespace object %q", ns))
	}
	return errs
}

// checkSelectors: workloads' selectors match their pod templates and select
// no other workload; each workload is selected by a Service, and each Service
// selects exactly one workload.
func checkSelectors(v *variant) []error {
	var errs []error
	ws := v.workloads()
	if len(ws) == 0 {
		return []error{errors.New("no Deployment or StatefulSet")}
	}
	for _, w := range ws {
		if len(w.selector) == 0 || w.selectorExpressions > 0 {
			errs = append(errs, fmt.Errorf("%s: selector must be non-empty matchLabels only", w))
			continue
		}
		if !selects(w.selector, w.template.Labels) {
			errs = append(errs, fmt.Errorf("%s: selector %v does not match pod template labels %v", w, w.selector, w.template.Labels))
		}
		for _, other := range ws {
			if other.String() != w.String() && selects(w.selector, other.template.Labels) {
				errs = append(errs, fmt.Errorf("%s: selector %v also matches the pods of %s", w, w.selector, other))
			}
		}
		selected := false
		for _, s := range v.services() {
			if selects(s.Spec.Selector, w.template.Labels) {
				selected = true
			}
		}
		if !selected {
			errs = append(errs, fmt.Errorf("%s: no Service selects its pods (labels %v)", w, w.template.Labels))
		}
		if w.kind == "StatefulSet" {
			s := v.service(w.serviceName)
			switch {
			case s == nil:
				errs = append(errs, fmt.Errorf("%s: serviceName %q names no Service", w, w.serviceName))
			case !isHeadless(s) || !selects(s.Spec.Selector, w.template.Labels):
				errs = append(errs, fmt.Errorf("%s: serviceName %q must be a headless Service selecting its pods", w, w.serviceName))
			}
		}
	}
	for _, s := range v.services() {
		if n := len(v.selectedBy(s.Spec.Selector)); n != 1 {
			errs = append(errs, fmt.Errorf("Service %s: selector %v selects the pods of %d workloads, want 1", s.Name, s.Spec.Selector, n))
		}
	}
	return errs
}

// checkServicePorts: every Service port's targetPort is a port of a
// container in each selected pod, with the same protocol.
func checkServicePorts(v *variant) []error {
	var errs []error
	for _, s := range v.services() {
		if len(s.Spec.Ports) == 0 {
			errs = append(errs, fmt.Errorf("Service %s: no ports", s.Name))
		}
		for _, p := range s.Spec.Ports {
			target := p.TargetPort.String()
			if target == "0" || target == "" {
				target = strconv.Itoa(int(p.Port))
			}
			for _, w := range v.selectedBy(s.Spec.Selector) {
				found := false
				for _, c := range w.template.Spec.Containers {
					if cp, ok := containerPort(&c, target); ok && protocolOr(cp.Protocol) == protocolOr(p.Protocol) {
						found = true
					}
				}
				if !found {
					errs = append(errs, fmt.Errorf("Service %s port %d: targetPort %q is no %s container port of %s", s.Name, p.Port, target, protocolOr(p.Protocol), w))
				}
			}
		}
	}
	return errs
}

// checkSecurity: every container runs as the non-root numeric user with a
// read-only root filesystem, no privilege escalation, no capabilities and
// the RuntimeDefault seccomp profile.
func checkSecurity(v *variant) []error {
	var errs []error
	for _, w := range v.workloads() {
		spec := &w.template.Spec
		psc := spec.SecurityContext
		if psc == nil {
			psc = &corev1.PodSecurityContext{}
		}
		if spec.HostNetwork || spec.HostPID || spec.HostIPC {
			errs = append(errs, fmt.Errorf("%s: uses the host's network, PID or IPC namespace", w))
		}
		for _, c := range allContainers(spec) {
			where := fmt.Sprintf("%s container %s", w, c.Name)
			sc := c.SecurityContext
			if sc == nil {
				errs = append(errs, fmt.Errorf("%s: no securityContext", where))
				continue
			}
			nonRoot := sc.RunAsNonRoot
			if nonRoot == nil {
				nonRoot = psc.RunAsNonRoot
			}
			if nonRoot == nil || !*nonRoot {
				errs = append(errs, fmt.Errorf("%s: runAsNonRoot is not true", where))
			}
			uid := sc.RunAsUser
			if uid == nil {
				uid = psc.RunAsUser
			}
			if uid == nil || *uid != runtimeUID {
				errs = append(errs, fmt.Errorf("%s: runAsUser is not %d", where, runtimeUID))
			}
			if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
				errs = append(errs, fmt.Errorf("%s: readOnlyRootFilesystem is not true", where))
			}
			if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
				errs = append(errs, fmt.Errorf("%s: allowPrivilegeEscalation is not false", where))
			}
			if sc.Privileged != nil && *sc.Privileged {
				errs = append(errs, fmt.Errorf("%s: privileged", where))
			}
			if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
				errs = append(errs, fmt.Errorf("%s: capabilities must drop ALL and add none", where))
			}
			seccomp := sc.SeccompProfile
			if seccomp == nil {
				seccomp = psc.SeccompProfile
			}
			if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
				errs = append(errs, fmt.Errorf("%s: seccompProfile is not RuntimeDefault", where))
			}
		}
	}
	return errs
}

func checkProbe(where, kind string, c *corev1.Container, p *corev1.Probe, paths ...string) []error {
	if p == nil {
		return []error{fmt.Errorf("%s: no %s probe", where, kind)}
	}
	if p.HTTPGet == nil {
		return []error{fmt.Errorf("%s: %s probe is not httpGet", where, kind)}
	}
	var errs []error
	if !slices.Contains(paths, p.HTTPGet.Path) {
		errs = append(errs, fmt.Errorf("%s: %s probe path %q, want %s", where, kind, p.HTTPGet.Path, strings.Join(paths, " or ")))
	}
	if _, ok := containerPort(c, p.HTTPGet.Port.String()); !ok {
		errs = append(errs, fmt.Errorf("%s: %s probe port %q is not a port of the container", where, kind, p.HTTPGet.Port.String()))
	}
	return errs
}

// probeBudget is how long a probe may keep failing before it gives up.
func probeBudget(p *corev1.Probe) time.Duration {
	period, failures := p.PeriodSeconds, p.FailureThreshold
	if period == 0 {
		period = 10
	}
	if failures == 0 {
		failures = 3
	}
	return time.Duration(p.InitialDelaySeconds+period*failures) * time.Second
}

// checkProbes: stepflash containers are ready on /health/ready and alive on
// /health; other model servers (vLLM) use /health for both. Every container
// has a startup probe, generous for one that pulls a model.
func checkProbes(v *variant) []error {
	var errs []error
	for _, w := range v.workloads() {
		for i := range w.template.Spec.Containers {
			c := &w.template.Spec.Containers[i]
			where := fmt.Sprintf("%s container %s", w, c.Name)
			ready, live := "/health", "/health"
			if isStepflash(c) {
				ready = "/health/ready"
			}
			errs = append(errs, checkProbe(where, "readiness", c, c.ReadinessProbe, ready)...)
			errs = append(errs, checkProbe(where, "liveness", c, c.LivenessProbe, live)...)
			errs = append(errs, checkProbe(where, "startup", c, c.StartupProbe, "/health", "/health/ready")...)
			if c.StartupProbe != nil && loadsModel(c) && probeBudget(c.StartupProbe) < minModelStartup {
				errs = append(errs, fmt.Errorf("%s: startup probe allows %v, under %v for a model pull", where, probeBudget(c.StartupProbe), minModelStartup))
			}
		}
	}
	return errs
}

// pinned reports why an image reference is not pinned to a tag or digest.
func pinned(image string) error {
	if image == "" {
		return errors.New("empty image")
	}
	if strings.Contains(image, "@sha256:") {
		return nil
	}
	repo := imageRepo(image)
	tag := strings.TrimPrefix(image[len(repo):], ":")
	switch tag {
	case "":
		return fmt.Errorf("image %q has no tag", image)
	case "latest":
		return fmt.Errorf("image %q is :latest", image)
	}
	return nil
}

// checkImages: every image is pinned, and every kustomize image override
// names an image the variant uses and pins it.
func checkImages(v *variant) []error {
	var errs []error
	repos := map[string]bool{}
	for _, w := range v.workloads() {
		for _, c := range allContainers(&w.template.Spec) {
			if err := pinned(c.Image); err != nil {
				errs = append(errs, fmt.Errorf("%s container %s: %v", w, c.Name, err))
			}
			repos[imageRepo(c.Image)] = true
		}
	}
	for _, img := range v.kust.Images {
		if !repos[img.Name] {
			errs = append(errs, fmt.Errorf("kustomization.yaml: image %q is used by no container", img.Name))
		}
		if img.Digest == "" && (img.NewTag == "" || img.NewTag == "latest") {
			errs = append(errs, fmt.Errorf("kustomization.yaml: image %q: newTag %q does not pin it", img.Name, img.NewTag))
		}
	}
	return errs
}

// checkScrapeAnnotations: every pod carries the Prometheus annotations that
// deploy/prometheus/scrape.yaml reads, on a port the pod serves.
func checkScrapeAnnotations(v *variant) []error {
	var errs []error
	for _, w := range v.workloads() {
		a := w.template.Annotations
		if a["prometheus.io/scrape"] != "true" {
			errs = append(errs, fmt.Errorf("%s: annotation prometheus.io/scrape is %q, want \"true\"", w, a["prometheus.io/scrape"]))
		}
		if a["prometheus.io/path"] != "/metrics" {
			errs = append(errs, fmt.Errorf("%s: annotation prometheus.io/path is %q, want /metrics", w, a["prometheus.io/path"]))
		}
		port := a["prometheus.io/port"]
		found := false
		for i := range w.template.Spec.Containers {
			if _, err := strconv.Atoi(port); err == nil {
				if _, ok := containerPort(&w.template.Spec.Containers[i], port); ok {
					found = true
				}
			}
		}
		if !found {
			errs = append(errs, fmt.Errorf("%s: annotation prometheus.io/port %q is no container port number", w, port))
		}
	}
	return errs
}

// checkResources: CPU and memory requests and a memory limit everywhere, a
// CPU limit on stepflash containers (the engine's -t is set from it), limits
// no lower than requests, and GPU requests equal to GPU limits.
func checkResources(v *variant) []error {
	var errs []error
	for _, w := range v.workloads() {
		for _, c := range allContainers(&w.template.Spec) {
			where := fmt.Sprintf("%s container %s", w, c.Name)
			req, lim := c.Resources.Requests, c.Resources.Limits
			for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
				if _, ok := req[r]; !ok {
					errs = append(errs, fmt.Errorf("%s: no %s request", where, r))
				}
			}
			if _, ok := lim[corev1.ResourceMemory]; !ok {
				errs = append(errs, fmt.Errorf("%s: no memory limit", where))
			}
			if _, ok := lim[corev1.ResourceCPU]; !ok && isStepflash(c) {
				errs = append(errs, fmt.Errorf("%s: no cpu limit", where))
			}
			for r, l := range lim {
				if q, ok := req[r]; ok && l.Cmp(q) < 0 {
					errs = append(errs, fmt.Errorf("%s: %s limit %s below its request %s", where, r, l.String(), q.String()))
				}
			}
			gpuReq, okReq := req["nvidia.com/gpu"]
			gpuLim, okLim := lim["nvidia.com/gpu"]
			if okReq != okLim || (okReq && gpuReq.Cmp(gpuLim) != 0) {
				errs = append(errs, fmt.Errorf("%s: nvidia.com/gpu request and limit differ", where))
			}
		}
	}
	return errs
}

var envRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// checkEnvAndVolumes: $(VAR) in command lines names an env var of the
// container (Kubernetes leaves unknown references as literal text); Secret
// references are optional and name the upstream Secret (or, for
// STEPFLASH_DB, the database Secret's dsn); a resourceFieldRef
// to a limit has that limit; every mount has a volume; a stepflash container
// that pulls a model has its cache on a writable volume.
func checkEnvAndVolumes(v *variant) []error {
	var errs []error
	for _, w := range v.workloads() {
		volumes := map[string]bool{}
		for _, vol := range w.template.Spec.Volumes {
			volumes[vol.Name] = true
		}
		for _, c := range w.claims {
			volumes[c] = true
		}
		for _, c := range allContainers(&w.template.Spec) {
			where := fmt.Sprintf("%s container %s", w, c.Name)
			for _, a := range commandLine(c) {
				for _, m := range envRef.FindAllStringSubmatch(a, -1) {
					if !hasEnv(c, m[1]) {
						errs = append(errs, fmt.Errorf("%s: argument %q refers to undefined env var %s", where, a, m[1]))
					}
				}
			}
			for _, e := range c.Env {
				if e.ValueFrom == nil {
					continue
				}
				if ref := e.ValueFrom.SecretKeyRef; ref != nil {
					known := ref.Name == upstreamSecret || (e.Name == "STEPFLASH_DB" && ref.Name == dbSecret && ref.Key == dbSecretKey)
					if !known || ref.Optional == nil || !*ref.Optional {
						errs = append(errs, fmt.Errorf("%s: env %s: secretKeyRef must name %s (or, for STEPFLASH_DB, %s key %s) with optional: true", where, e.Name, upstreamSecret, dbSecret, dbSecretKey))
					}
				}
				if ref := e.ValueFrom.ResourceFieldRef; ref != nil {
					if r, ok := strings.CutPrefix(ref.Resource, "limits."); ok {
						if _, ok := c.Resources.Limits[corev1.ResourceName(r)]; !ok {
							errs = append(errs, fmt.Errorf("%s: env %s reads %s, which is not set", where, e.Name, ref.Resource))
						}
					}
					if ref.ContainerName != "" && ref.ContainerName != c.Name {
						errs = append(errs, fmt.Errorf("%s: env %s reads the resources of container %q", where, e.Name, ref.ContainerName))
					}
				}
			}
			for _, e := range c.EnvFrom {
				if e.SecretRef != nil && (e.SecretRef.Optional == nil || !*e.SecretRef.Optional) {
					errs = append(errs, fmt.Errorf("%s: envFrom secretRef %s must be optional", where, e.SecretRef.Name))
				}
			}
			for _, m := range c.VolumeMounts {
				if !volumes[m.Name] {
					errs = append(errs, fmt.Errorf("%s: volumeMount %s names no volume", where, m.Name))
				}
			}
			if isStepflash(c) && loadsModel(c) {
				cache, ok := envValue(c, "STEPFLASH_CACHE")
				if !ok {
					errs = append(errs, fmt.Errorf("%s: loads a model but sets no STEPFLASH_CACHE", where))
					continue
				}
				if !slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.MountPath == cache && !m.ReadOnly }) {
					errs = append(errs, fmt.Errorf("%s: STEPFLASH_CACHE %s is not a writable volume mount (the root filesystem is read-only)", where, cache))
				}
			}
		}
	}
	return errs
}

// writableVolumes names the volumes of a workload's pods that a container
// can write: emptyDirs, PersistentVolumeClaims (volumeClaimTemplates too)
// and generic ephemeral volumes. ConfigMap, Secret, downwardAPI and
// projected volumes are read-only whatever the mount says.
func writableVolumes(w workload) map[string]bool {
	out := map[string]bool{}
	for _, vol := range w.template.Spec.Volumes {
		if vol.EmptyDir != nil || vol.Ephemeral != nil || (vol.PersistentVolumeClaim != nil && !vol.PersistentVolumeClaim.ReadOnly) {
			out[vol.Name] = true
		}
	}
	for _, c := range w.claims {
		out[c] = true
	}
	return out
}

// writableDir reports whether dir (relative ones from the container's
// working directory, else /) lies at or below a writable mount of c.
func writableDir(c *corev1.Container, writable map[string]bool, dir string) bool {
	if !path.IsAbs(dir) {
		wd := c.WorkingDir
		if wd == "" {
			wd = "/"
		}
		dir = path.Join(wd, dir)
	}
	dir = path.Clean(dir)
	for _, m := range c.VolumeMounts {
		mp := path.Clean(m.MountPath)
		if writable[m.Name] && !m.ReadOnly && (dir == mp || mp == "/" || strings.HasPrefix(dir, mp+"/")) {
			return true
		}
	}
	return false
}

// opensStore reports whether a stepflash container runs a command that
// opens the key store and usage ledger (serve, keys, usage; serve is the
// image's default command).
func opensStore(c *corev1.Container) bool {
	if !isStepflash(c) {
		return false
	}
	if len(c.Command) == 0 && len(c.Args) == 0 {
		return true
	}
	return slices.ContainsFunc(commandLine(c), func(a string) bool { return a == "serve" || a == "keys" || a == "usage" })
}

func isPostgres(dsn string) bool {
	return strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
}

// checkDataDir: serve opens its key store and usage ledger before it
// listens, and stops if it cannot, so a stepflash container whose root
// filesystem is read-only needs the database somewhere writable. It is
// resolved as the binary does (cmd/stepflash/store.go): --db, else --data,
// else $STEPFLASH_DB, else $STEPFLASH_DATA's stepflash.db, else a dir under
// the home directory, on the root filesystem. $STEPFLASH_DB from an optional
// Secret may be unset, so it still needs the data dir. A gateway with more
// than one replica needs a way to one shared Postgres database
// (STEPFLASH_DB, or --db postgres://…): SQLite on each pod's own volume
// would give each replica its own keys and its own part of the ledger.
func checkDataDir(v *variant) []error {
	var errs []error
	for _, w := range v.workloads() {
		writable := writableVolumes(w)
		for _, c := range allContainers(&w.template.Spec) {
			if !opensStore(c) {
				continue
			}
			where := fmt.Sprintf("%s container %s", w, c.Name)
			args := commandLine(c)
			readOnlyRoot := c.SecurityContext != nil && c.SecurityContext.ReadOnlyRootFilesystem != nil && *c.SecurityContext.ReadOnlyRootFilesystem
			db, dbGiven := flagValue(args, "--db", "-db")
			dbFlag := dbGiven && db != "" // --db "" clears $STEPFLASH_DB
			dataDir, dataFlag := flagValue(args, "--data", "-data")
			envDB, envDBLiteral := envValue(c, "STEPFLASH_DB")
			envDBLiteral = envDBLiteral && envDB != "" && !dbGiven
			envDBSecret := !dbGiven && slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool {
				return e.Name == "STEPFLASH_DB" && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil
			})
			var dsn, what string // the database, and what named it
			switch {
			case dbFlag && dataFlag:
				errs = append(errs, fmt.Errorf("%s: both --data and --db (serve refuses to start)", where))
				continue
			case dbFlag:
				dsn, what = db, "--db"
			case dataFlag:
				if hasEnv(c, "STEPFLASH_DB") {
					errs = append(errs, fmt.Errorf("%s: --data %s is given, so STEPFLASH_DB is ignored (an explicit --data wins over it)", where, dataDir))
				}
				dsn, what = "sqlite:"+path.Join(dataDir, "stepflash.db"), "--data"
			case envDBLiteral:
				dsn, what = envDB, "STEPFLASH_DB"
			default:
				if dir, ok := envValue(c, "STEPFLASH_DATA"); ok && dir != "" {
					dsn, what = "sqlite:"+path.Join(dir, "stepflash.db"), "STEPFLASH_DATA"
				} else if readOnlyRoot {
					errs = append(errs, fmt.Errorf("%s: sets no STEPFLASH_DATA, --data or --db: serve would open stepflash.db under the home directory, on the read-only root filesystem, and fail at start", where))
					continue
				} else {
					what = "the default data dir"
				}
			}
			// A $(VAR) expands at start (checkEnvAndVolumes checks VAR).
			sqlite := dsn != "" && !isPostgres(dsn) && !strings.Contains(dsn, "$(")
			if sqlite && readOnlyRoot {
				file, _, _ := strings.Cut(strings.TrimPrefix(dsn, "sqlite:"), "?")
				if dir := path.Dir(file); !writableDir(c, writable, dir) {
					errs = append(errs, fmt.Errorf("%s: %s %s is not on a writable volume mount (the root filesystem is read-only): serve cannot open its key store and ledger", where, what, strings.TrimPrefix(strings.TrimSuffix(dsn, "/stepflash.db"), "sqlite:")))
				}
			}
			shared := isPostgres(dsn) || strings.Contains(dsn, "$(") || (!dbFlag && !dataFlag && envDBSecret)
			if isGateway(c) && w.replicas > 1 && !shared {
				errs = append(errs, fmt.Errorf("%s: %d gateway replicas each with their own SQLite (%s): keys and ledger are not shared; set STEPFLASH_DB from Secret %s key %s (optional), or --db postgres://…", where, w.replicas, what, dbSecret, dbSecretKey))
			}
		}
	}
	return errs
}

// checkDisruptionBudgets: every gateway has a PodDisruptionBudget, and every
// budget selects one workload and still allows an eviction.
func checkDisruptionBudgets(v *variant) []error {
	var errs []error
	for _, p := range v.pdbs() {
		var sel map[string]string
		if p.Spec.Selector != nil {
			sel = p.Spec.Selector.MatchLabels
		}
		ws := v.selectedBy(sel)
		if len(ws) != 1 {
			errs = append(errs, fmt.Errorf("PodDisruptionBudget %s: selects %d workloads, want 1", p.Name, len(ws)))
			continue
		}
		if m := p.Spec.MinAvailable; m != nil {
			if n, err := strconv.Atoi(m.String()); err == nil && int32(n) >= ws[0].replicas {
				errs = append(errs, fmt.Errorf("PodDisruptionBudget %s: minAvailable %d with %d replicas blocks every eviction", p.Name, n, ws[0].replicas))
			}
		}
	}
	for _, w := range v.workloads() {
		if !slices.ContainsFunc(w.template.Spec.Containers, func(c corev1.Container) bool { return isGateway(&c) }) {
			continue
		}
		if w.replicas < 2 {
			errs = append(errs, fmt.Errorf("%s: a gateway runs %d replica(s), want at least 2", w, w.replicas))
		}
		covered := false
		for _, p := range v.pdbs() {
			if p.Spec.Selector != nil && selects(p.Spec.Selector.MatchLabels, w.template.Labels) {
				covered = true
			}
		}
		if !covered {
			errs = append(errs, fmt.Errorf("%s: gateway without a PodDisruptionBudget", w))
		}
	}
	return errs
}

// ---- the gateway config ----------------------------------------------------------

// gatewayConfig is the gateway's config file, field for field; decoding is
// strict, so a key the server would reject fails here too.
type gatewayConfig struct {
	Addr   string         `json:"addr,omitempty"`
	Models []gatewayModel `json:"models"`
}

type gatewayModel struct {
	Name      string            `json:"name"`
	Aliases   []string          `json:"aliases,omitempty"`
	Routing   string            `json:"routing,omitempty"`
	Upstreams []gatewayUpstream `json:"upstreams"`
}

type gatewayUpstream struct {
	Name      string           `json:"name,omitempty"`
	BaseURL   string           `json:"base_url"`
	Model     string           `json:"model,omitempty"`
	APIKeyEnv string           `json:"api_key_env,omitempty"`
	Discover  string           `json:"discover,omitempty"`
	Health    string           `json:"health,omitempty"`
	Timeouts  *gatewayTimeouts `json:"timeouts,omitempty"`
}

type gatewayTimeouts struct {
	Connect   string `json:"connect,omitempty"`
	FirstByte string `json:"first_byte,omitempty"`
	Idle      string `json:"idle,omitempty"`
}

var routings = []string{"prefix", "round_robin", "ordered"}

func parseGatewayConfig(data string) (*gatewayConfig, error) {
	dec := json.NewDecoder(strings.NewReader(data))
	dec.DisallowUnknownFields()
	var c gatewayConfig
	if err := dec.Decode(&c); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("data after the JSON object")
	}
	return &c, nil
}

// upstreamService finds the Service a base_url host names: "svc" or
// "svc.<namespace>.svc.cluster.local".
func upstreamService(v *variant, host string) (*corev1.Service, error) {
	name := host
	if first, rest, ok := strings.Cut(host, "."); ok {
		if rest != v.kust.Namespace+".svc.cluster.local" {
			return nil, fmt.Errorf("host %q is neither a Service's short name nor <svc>.%s.svc.cluster.local", host, v.kust.Namespace)
		}
		name = first
	}
	s := v.service(name)
	if s == nil {
		return nil, fmt.Errorf("host %q names no Service in %s", host, v.name)
	}
	return s, nil
}

// checkUpstream validates one upstream against the variant's Services and the
// gateway container.
func checkUpstream(v *variant, gw *corev1.Container, where string, u gatewayUpstream) []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(where+": "+format, args...)) }
	pu, err := url.Parse(u.BaseURL)
	if err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
		bad("base_url %q is not an http(s) URL", u.BaseURL)
		return errs
	}
	if !strings.HasSuffix(strings.TrimSuffix(pu.Path, "/"), "/v1") {
		bad("base_url %q does not end in /v1", u.BaseURL)
	}
	switch u.Discover {
	case "", "dns":
	default:
		bad("discover %q, want \"dns\" or nothing", u.Discover)
	}
	if u.Health != "" && !strings.HasPrefix(u.Health, "/") {
		bad("health %q is not a path", u.Health)
	}
	if u.Timeouts != nil {
		for name, s := range map[string]string{"connect": u.Timeouts.Connect, "first_byte": u.Timeouts.FirstByte, "idle": u.Timeouts.Idle} {
			if s == "" {
				continue
			}
			if d, err := time.ParseDuration(s); err != nil || d <= 0 {
				bad("timeouts.%s %q is not a positive duration", name, s)
			}
		}
	}
	if u.APIKeyEnv != "" && !hasEnv(gw, u.APIKeyEnv) {
		bad("api_key_env %s is not set on gateway container %s", u.APIKeyEnv, gw.Name)
	}
	svc, err := upstreamService(v, pu.Hostname())
	if err != nil {
		bad("%v", err)
		return errs
	}
	if u.Discover == "dns" && !isHeadless(svc) {
		bad("discover \"dns\" on Service %s, which is not headless (its DNS name is one virtual IP)", svc.Name)
	}
	port := pu.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[pu.Scheme]
	}
	backends := v.selectedBy(svc.Spec.Selector)
	if isHeadless(svc) {
		// A headless name resolves to pod IPs: the port is the pods' own.
		for _, w := range backends {
			if !slices.ContainsFunc(w.template.Spec.Containers, func(c corev1.Container) bool { _, ok := containerPort(&c, port); return ok }) {
				bad("port %s is no container port of %s behind headless Service %s", port, w, svc.Name)
			}
		}
	} else if !slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return strconv.Itoa(int(p.Port)) == port }) {
		bad("port %s is not a port of Service %s", port, svc.Name)
	}
	// The upstream model must be one the backend serves.
	for _, w := range backends {
		for i := range w.template.Spec.Containers {
			c := &w.template.Spec.Containers[i]
			args := commandLine(c)
			var served []string
			if isStepflash(c) {
				served = append([]string{defaultModelName}, flagValues(args, "--alias")...)
			} else if m, ok := flagValue(args, "--model"); ok {
				served = flagValues(args, "--served-model-name")
				if len(served) == 0 {
					served = []string{m}
				}
			} else {
				continue
			}
			if !slices.Contains(served, u.Model) {
				bad("model %q is not served by %s (it serves %v)", u.Model, w, served)
			}
		}
	}
	return errs
}

// checkGatewayConfig: each gateway reads --config from a ConfigMap mounted
// at the config's directory; the config decodes strictly and every upstream
// names a Service of the variant, headless where discovered by DNS.
func checkGatewayConfig(v *variant) []error {
	var errs []error
	gateways := 0
	for _, w := range v.workloads() {
		for i := range w.template.Spec.Containers {
			c := &w.template.Spec.Containers[i]
			if !isGateway(c) {
				continue
			}
			gateways++
			where := fmt.Sprintf("%s container %s", w, c.Name)
			args := commandLine(c)
			if args[0] != "/stepflash" && args[0] != "serve" {
				errs = append(errs, fmt.Errorf("%s: command line %q does not run stepflash serve", where, args))
			}
			if !slices.Contains(args, "serve") {
				errs = append(errs, fmt.Errorf("%s: command line %q has no serve", where, args))
			}
			if addr, ok := flagValue(args, "--addr"); ok {
				_, port, err := net.SplitHostPort(addr)
				if _, found := containerPort(c, port); err != nil || !found {
					errs = append(errs, fmt.Errorf("%s: --addr %s does not listen on a container port", where, addr))
				}
			}
			cfgPath, _ := flagValue(args, "--config", "-config")
			dir, file := path.Split(cfgPath)
			dir = path.Clean(dir)
			var mount *corev1.VolumeMount
			for j := range c.VolumeMounts {
				if path.Clean(c.VolumeMounts[j].MountPath) == dir {
					mount = &c.VolumeMounts[j]
				}
			}
			if mount == nil {
				errs = append(errs, fmt.Errorf("%s: nothing is mounted at %s (for --config %s)", where, dir, cfgPath))
				continue
			}
			var cmName string
			for _, vol := range w.template.Spec.Volumes {
				if vol.Name == mount.Name && vol.ConfigMap != nil {
					cmName = vol.ConfigMap.Name
					if len(vol.ConfigMap.Items) > 0 {
						errs = append(errs, fmt.Errorf("%s: ConfigMap volume %s maps items; mount the whole ConfigMap", where, vol.Name))
					}
				}
			}
			cm := v.configMap(cmName)
			if cm == nil {
				errs = append(errs, fmt.Errorf("%s: %s is not mounted from a ConfigMap of the variant", where, dir))
				continue
			}
			data, ok := cm.Data[file]
			if !ok {
				errs = append(errs, fmt.Errorf("%s: ConfigMap %s has no key %s", where, cm.Name, file))
				continue
			}
			cfg, err := parseGatewayConfig(data)
			if err != nil {
				errs = append(errs, fmt.Errorf("ConfigMap %s %s: %v", cm.Name, file, err))
				continue
			}
			if cfg.Addr != "" {
				if _, _, err := net.SplitHostPort(cfg.Addr); err != nil {
					errs = append(errs, fmt.Errorf("ConfigMap %s %s: addr %q: %v", cm.Name, file, cfg.Addr, err))
				}
			}
			if len(cfg.Models) == 0 {
				errs = append(errs, fmt.Errorf("ConfigMap %s %s: no models", cm.Name, file))
			}
			names := map[string]bool{}
			for mi, m := range cfg.Models {
				mwhere := fmt.Sprintf("ConfigMap %s %s models[%d]", cm.Name, file, mi)
				for _, n := range append([]string{m.Name}, m.Aliases...) {
					if n == "" || names[n] {
						errs = append(errs, fmt.Errorf("%s: name %q is empty or served twice", mwhere, n))
					}
					names[n] = true
				}
				if m.Routing != "" && !slices.Contains(routings, m.Routing) {
					errs = append(errs, fmt.Errorf("%s: routing %q, want one of %v", mwhere, m.Routing, routings))
				}
				if len(m.Upstreams) == 0 {
					errs = append(errs, fmt.Errorf("%s: no upstreams", mwhere))
				}
				for ui, u := range m.Upstreams {
					errs = append(errs, checkUpstream(v, c, fmt.Sprintf("%s.upstreams[%d]", mwhere, ui), u)...)
				}
			}
		}
	}
	if gateways == 0 {
		errs = append(errs, errors.New("no stepflash gateway (a stepflash container started with --config)"))
	}
	return errs
}

// ---- Prometheus ------------------------------------------------------------------

type promConfig struct {
	ScrapeConfigs []scrapeConfig `json:"scrape_configs"`
}

type scrapeConfig struct {
	JobName             string          `json:"job_name"`
	ScrapeInterval      string          `json:"scrape_interval,omitempty"`
	ScrapeTimeout       string          `json:"scrape_timeout,omitempty"`
	MetricsPath         string          `json:"metrics_path,omitempty"`
	Scheme              string          `json:"scheme,omitempty"`
	KubernetesSDConfigs []kubernetesSD  `json:"kubernetes_sd_configs"`
	RelabelConfigs      []relabelConfig `json:"relabel_configs"`
}

type kubernetesSD struct {
	Role       string `json:"role"`
	Namespaces *struct {
		Names []string `json:"names"`
	} `json:"namespaces,omitempty"`
}

type relabelConfig struct {
	SourceLabels []string `json:"source_labels,omitempty"`
	Separator    *string  `json:"separator,omitempty"`
	Regex        *string  `json:"regex,omitempty"`
	TargetLabel  string   `json:"target_label,omitempty"`
	Replacement  *string  `json:"replacement,omitempty"`
	Action       string   `json:"action,omitempty"`
}

// relabel applies Prometheus relabeling (keep, drop, replace, labelmap) to a
// target's labels, as Prometheus does: regexes are anchored, the defaults
// are separator ";", regex "(.*)", replacement "$1", action replace. It
// reports whether the target is kept.
func relabel(rules []relabelConfig, labels map[string]string) (bool, error) {
	for i, r := range rules {
		sep, re, repl := ";", "(.*)", "$1"
		if r.Separator != nil {
			sep = *r.Separator
		}
		if r.Regex != nil {
			re = *r.Regex
		}
		if r.Replacement != nil {
			repl = *r.Replacement
		}
		rx, err := regexp.Compile("^(?:" + re + ")$")
		if err != nil {
			return false, fmt.Errorf("relabel_configs[%d]: %v", i, err)
		}
		vals := make([]string, len(r.SourceLabels))
		for j, s := range r.SourceLabels {
			vals[j] = labels[s]
		}
		val := strings.Join(vals, sep)
		switch r.Action {
		case "keep":
			if !rx.MatchString(val) {
				return false, nil
			}
		case "drop":
			if rx.MatchString(val) {
				return false, nil
			}
		case "", "replace":
			if r.TargetLabel == "" {
				return false, fmt.Errorf("relabel_configs[%d]: replace without target_label", i)
			}
			idx := rx.FindStringSubmatchIndex(val)
			if idx == nil {
				continue
			}
			target := string(rx.ExpandString(nil, r.TargetLabel, val, idx))
			res := string(rx.ExpandString(nil, repl, val, idx))
			if res == "" {
				delete(labels, target)
			} else {
				labels[target] = res
			}
		case "labelmap":
			for name, value := range copyLabels(labels) {
				if rx.MatchString(name) {
					labels[rx.ReplaceAllString(name, repl)] = value
				}
			}
		default:
			return false, fmt.Errorf("relabel_configs[%d]: action %q is not supported here", i, r.Action)
		}
	}
	return true, nil
}

// copyLabels copies a label set, so relabeling can add to the original
// while iterating.
func copyLabels(m map[string]string) map[string]string {
	c := make(map[string]string, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

var nonLabelChars = regexp.MustCompile(`[^a-zA-Z0-9_]`)

// podTarget builds the labels Kubernetes pod discovery gives a target of a
// pod with these annotations and labels. Discovery makes one target per
// container port; this one is for port 9999, so that only the relabeling can
// put the annotated port into the address.
func podTarget(ns string, annotations, labels map[string]string, podIP, phase string, job scrapeConfig) map[string]string {
	metrics := job.MetricsPath
	if metrics == "" {
		metrics = "/metrics"
	}
	l := map[string]string{
		"__address__":                     net.JoinHostPort(podIP, "9999"),
		"__metrics_path__":                metrics,
		"__scheme__":                      "http",
		"__meta_kubernetes_namespace":     ns,
		"__meta_kubernetes_pod_name":      "pod-0",
		"__meta_kubernetes_pod_ip":        podIP,
		"__meta_kubernetes_pod_phase":     phase,
		"__meta_kubernetes_pod_ready":     "true",
		"__meta_kubernetes_pod_node_name": "node-a",
	}
	for k, v := range annotations {
		l["__meta_kubernetes_pod_annotation_"+nonLabelChars.ReplaceAllString(k, "_")] = v
	}
	for k, v := range labels {
		l["__meta_kubernetes_pod_label_"+nonLabelChars.ReplaceAllString(k, "_")] = v
	}
	return l
}

func parsePromConfig(data []byte) (*promConfig, error) {
	var c promConfig
	if err := decodeStrict(data, &c); err != nil {
		return nil, err
	}
	return &c, nil
}

// checkPrometheus: the scrape snippet decodes strictly, watches pods in
// every variant's namespace, and its relabeling turns each of our pods into
// a target at the annotated port and path (IPv4 and IPv6), while dropping
// unannotated and non-running pods.
func checkPrometheus(cfg *promConfig, variants []*variant) []error {
	var errs []error
	if len(cfg.ScrapeConfigs) == 0 {
		return []error{errors.New("no scrape_configs")}
	}
	for _, job := range cfg.ScrapeConfigs {
		for _, d := range []string{job.ScrapeInterval, job.ScrapeTimeout} {
			if d != "" {
				if _, err := time.ParseDuration(d); err != nil {
					errs = append(errs, fmt.Errorf("job %s: %v", job.JobName, err))
				}
			}
		}
		if len(job.KubernetesSDConfigs) == 0 || job.KubernetesSDConfigs[0].Role != "pod" {
			errs = append(errs, fmt.Errorf("job %s: want kubernetes_sd_configs with role: pod", job.JobName))
			continue
		}
		sd := job.KubernetesSDConfigs[0]
		for _, v := range variants {
			if sd.Namespaces != nil && !slices.Contains(sd.Namespaces.Names, v.kust.Namespace) {
				errs = append(errs, fmt.Errorf("job %s: namespace %s of %s is not watched", job.JobName, v.kust.Namespace, v.name))
			}
			for _, w := range v.workloads() {
				tpl := w.template
				// The pod as written, and the same pod annotated with
				// another port and path: the rules must follow the
				// annotations, not happen to match the defaults.
				other := copyLabels(tpl.Annotations)
				other["prometheus.io/port"] = "9100"
				other["prometheus.io/path"] = "/alt/metrics"
				for _, ann := range []map[string]string{tpl.Annotations, other} {
					for _, ip := range []string{"10.1.2.3", "fd00:10:244::7"} {
						l := podTarget(v.kust.Namespace, ann, tpl.Labels, ip, "Running", job)
						kept, err := relabel(job.RelabelConfigs, l)
						if err != nil {
							return append(errs, fmt.Errorf("job %s: %v", job.JobName, err))
						}
						wantAddr, wantPath := net.JoinHostPort(ip, ann["prometheus.io/port"]), ann["prometheus.io/path"]
						if !kept || l["__address__"] != wantAddr || l["__metrics_path__"] != wantPath {
							errs = append(errs, fmt.Errorf("job %s: %s pod at %s annotated %s%s: kept %v, address %q, path %q; want kept at %s%s",
								job.JobName, w, ip, ann["prometheus.io/port"], ann["prometheus.io/path"], kept, l["__address__"], l["__metrics_path__"], wantAddr, wantPath))
						}
					}
				}
				if kept, _ := relabel(job.RelabelConfigs, podTarget(v.kust.Namespace, tpl.Annotations, tpl.Labels, "10.1.2.3", "Pending", job)); kept {
					errs = append(errs, fmt.Errorf("job %s: a Pending %s pod is scraped", job.JobName, w))
				}
				if kept, _ := relabel(job.RelabelConfigs, podTarget(v.kust.Namespace, nil, tpl.Labels, "10.1.2.3", "Running", job)); kept {
					errs = append(errs, fmt.Errorf("job %s: a pod without prometheus.io/scrape is scraped", job.JobName))
				}
			}
		}
	}
	return errs
}

// ---- Dockerfile ------------------------------------------------------------------

type instruction struct {
	cmd  string // upper case: FROM, RUN, ...
	args string
}

type stage struct {
	image, name string
	ins         []instruction
}

// parseDockerfile splits a Dockerfile into stages of instructions, joining
// continuation lines and dropping comments.
func parseDockerfile(text string) ([]stage, error) {
	var logical []string
	var cur strings.Builder
	for _, line := range strings.Split(text, "\n") {
		t := strings.TrimSpace(line)
		if strings.HasPrefix(t, "#") || (t == "" && cur.Len() == 0) {
			continue
		}
		if s, ok := strings.CutSuffix(t, "\\"); ok {
			cur.WriteString(s)
			cur.WriteString(" ")
			continue
		}
		cur.WriteString(t)
		logical = append(logical, cur.String())
		cur.Reset()
	}
	var stages []stage
	for _, l := range logical {
		cmd, args, _ := strings.Cut(l, " ")
		in := instruction{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args)}
		if in.cmd == "FROM" {
			f := strings.Fields(in.args)
			f = slices.DeleteFunc(f, func(s string) bool { return strings.HasPrefix(s, "--platform=") })
			if len(f) == 0 {
				return nil, errors.New("FROM without an image")
			}
			st := stage{image: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				st.name = f[2]
			}
			stages = append(stages, st)
			continue
		}
		if len(stages) == 0 {
			if in.cmd == "ARG" {
				continue
			}
			return nil, fmt.Errorf("%s before the first FROM", in.cmd)
		}
		stages[len(stages)-1].ins = append(stages[len(stages)-1].ins, in)
	}
	return stages, nil
}

var goDirective = regexp.MustCompile(`(?m)^go (\d+\.\d+)`)

// checkDockerfile: a multi-stage build of the static binary (CGO_ENABLED=0,
// -trimpath, GOEXPERIMENT=simd) with a Go image at go.mod's version, into a
// shell-less final image that runs as a numeric non-root user with CA
// certificates, the model cache at /models and port 8000.
func checkDockerfile(text, goMod string) []error {
	stages, err := parseDockerfile(text)
	if err != nil {
		return []error{err}
	}
	var errs []error
	if len(stages) < 2 {
		return []error{fmt.Errorf("%d stage(s), want a multi-stage build", len(stages))}
	}
	for _, s := range stages {
		if s.image == "scratch" || slices.ContainsFunc(stages, func(o stage) bool { return o.name != "" && o.name == s.image }) {
			continue
		}
		if err := pinned(s.image); err != nil {
			errs = append(errs, fmt.Errorf("FROM %v", err))
		}
	}
	build, final := stages[0], stages[len(stages)-1]
	if m := goDirective.FindStringSubmatch(goMod); m != nil {
		tag := strings.TrimPrefix(build.image[len(imageRepo(build.image)):], ":")
		if path.Base(imageRepo(build.image)) != "golang" || !(tag == m[1] || strings.HasPrefix(tag, m[1]+".") || strings.HasPrefix(tag, m[1]+"-")) {
			errs = append(errs, fmt.Errorf("build stage FROM %s, want golang:%s (go.mod's go version)", build.image, m[1]))
		}
	}
	// The go build step with the ENV lines of the build stages before it.
	var buildRun string
	for _, st := range stages[:len(stages)-1] {
		for _, in := range st.ins {
			if in.cmd == "ENV" || (in.cmd == "RUN" && strings.Contains(in.args, "go build")) {
				buildRun += " " + in.args
			}
		}
	}
	for _, want := range []string{"go build", "CGO_ENABLED=0", "-trimpath", "GOEXPERIMENT=simd", "./cmd/stepflash"} {
		if !strings.Contains(buildRun, want) {
			errs = append(errs, fmt.Errorf("build stage: no %q in the go build step", want))
		}
	}
	if final.image != "scratch" && !strings.HasPrefix(final.image, "gcr.io/distroless/static") {
		errs = append(errs, fmt.Errorf("final stage FROM %s: want scratch or gcr.io/distroless/static (no shell, no package manager)", final.image))
	}
	var user, expose, entrypoint, cmd string
	env, volumes, copies := map[string]string{}, "", ""
	for _, in := range final.ins {
		switch in.cmd {
		case "RUN":
			errs = append(errs, fmt.Errorf("final stage: RUN %s (the final image has no shell)", in.args))
		case "USER":
			user = in.args
		case "EXPOSE":
			expose += " " + in.args + " "
		case "ENTRYPOINT":
			entrypoint = in.args
		case "CMD":
			cmd = in.args
		case "ENV":
			k, val, _ := strings.Cut(in.args, "=")
			env[strings.TrimSpace(k)] = strings.Trim(strings.TrimSpace(val), `"`)
		case "VOLUME":
			volumes += in.args
		case "COPY":
			copies += in.args + "\n"
		}
	}
	uid, _, _ := strings.Cut(user, ":")
	if n, err := strconv.Atoi(uid); err != nil || n == 0 {
		errs = append(errs, fmt.Errorf("final stage: USER %q, want a numeric non-root uid", user))
	}
	if !strings.Contains(expose, " 8000 ") && !strings.Contains(expose, " 8000/tcp ") {
		errs = append(errs, fmt.Errorf("final stage: no EXPOSE 8000"))
	}
	var ep []string
	if err := json.Unmarshal([]byte(entrypoint), &ep); err != nil || len(ep) == 0 || ep[0] != "/stepflash" {
		errs = append(errs, fmt.Errorf("final stage: ENTRYPOINT %s, want [\"/stepflash\"] (exec form)", entrypoint))
	}
	var cmdArgs []string
	if err := json.Unmarshal([]byte(cmd), &cmdArgs); err != nil || len(cmdArgs) == 0 || cmdArgs[0] != "serve" {
		errs = append(errs, fmt.Errorf("final stage: CMD %s, want [\"serve\", ...] (exec form)", cmd))
	} else if addr, _ := flagValue(cmdArgs, "--addr"); !strings.HasSuffix(addr, ":8000") {
		errs = append(errs, fmt.Errorf("final stage: CMD %s does not listen on :8000", cmd))
	}
	if !strings.Contains(copies, "/stepflash\n") {
		errs = append(errs, errors.New("final stage: the binary is not copied to /stepflash"))
	}
	if env["STEPFLASH_CACHE"] != "/models" || !strings.Contains(volumes, "/models") {
		errs = append(errs, errors.New("final stage: want ENV STEPFLASH_CACHE=/models and VOLUME /models"))
	}
	if final.image == "scratch" && !strings.Contains(copies, "ca-certificates") {
		errs = append(errs, errors.New("final stage: FROM scratch without CA certificates (HTTPS upstreams fail)"))
	}
	return errs
}

func checkDockerignore(text string) []error {
	lines := map[string]bool{}
	for _, l := range strings.Split(text, "\n") {
		lines[strings.TrimSuffix(strings.TrimSpace(l), "/")] = true
	}
	var errs []error
	for _, want := range []string{".git", "bin", "**/*.gguf"} {
		if !lines[want] {
			errs = append(errs, fmt.Errorf(".dockerignore: no %q line", want))
		}
	}
	return errs
}

// ---- tests -------------------------------------------------------------------------

func TestManifests(t *testing.T) {
	for _, name := range variantNames(t) {
		t.Run(name, func(t *testing.T) {
			v := mustLoad(t, name)
			for _, c := range variantChecks {
				t.Run(c.name, func(t *testing.T) {
					if errs := c.fn(v); len(errs) > 0 {
						t.Errorf("%d problem(s):%s", len(errs), joinErrs(errs))
					}
				})
			}
		})
	}
}

func TestPrometheusScrape(t *testing.T) {
	data, err := os.ReadFile(prometheusFile)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := parsePromConfig(data)
	if err != nil {
		t.Fatalf("%s: %v", prometheusFile, err)
	}
	var vs []*variant
	for _, name := range variantNames(t) {
		vs = append(vs, mustLoad(t, name))
	}
	if errs := checkPrometheus(cfg, vs); len(errs) > 0 {
		t.Errorf("%s: %d problem(s):%s", prometheusFile, len(errs), joinErrs(errs))
	}
}

func TestDockerfile(t *testing.T) {
	df, err := os.ReadFile(dockerfilePath)
	if err != nil {
		t.Fatal(err)
	}
	gomod, err := os.ReadFile(goModPath)
	if err != nil {
		t.Fatal(err)
	}
	if errs := checkDockerfile(string(df), string(gomod)); len(errs) > 0 {
		t.Errorf("Dockerfile: %d problem(s):%s", len(errs), joinErrs(errs))
	}
	di, err := os.ReadFile(dockerignore)
	if err != nil {
		t.Fatal(err)
	}
	if errs := checkDockerignore(string(di)); len(errs) > 0 {
		t.Errorf("%d problem(s):%s", len(errs), joinErrs(errs))
	}
}

// TestLayout: this directory holds only tests, YAML and documentation.
func TestLayout(t *testing.T) {
	err := filepath.WalkDir(".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		switch ext := filepath.Ext(p); {
		case strings.HasSuffix(p, "_test.go"), ext == ".yaml", ext == ".yml", ext == ".md":
		default:
			t.Errorf("%s: only _test.go files, YAML and Markdown belong in deploy/", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// ---- every check can fail ----------------------------------------------------------

// breakVariant copies a variant's files into memory, applies edit to the
// named file's text (an edit that returns "" deletes the file), and loads
// the result.
func breakVariant(t *testing.T, name, file string, edit func(string) string) (*variant, error) {
	t.Helper()
	dir := filepath.Join(kubernetesDir, name)
	mem := fstest.MapFS{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		mem[filepath.ToSlash(rel)] = &fstest.MapFile{Data: data}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	f, ok := mem[file]
	if !ok {
		t.Fatalf("%s/%s does not exist", name, file)
	}
	after := edit(string(f.Data))
	switch {
	case after == string(f.Data):
		t.Fatalf("the edit of %s/%s changed nothing (did the manifest change? update the test case)", name, file)
	case after == "":
		delete(mem, file)
	default:
		f.Data = []byte(after)
	}
	return loadVariant(name, mem)
}

// replace returns an edit that replaces the first old with new.
func replace(old, new string) func(string) string {
	return func(s string) string { return strings.Replace(s, old, new, 1) }
}

// edits returns an edit that applies each of es in turn; if one of them
// changes nothing, the whole edit changes nothing (which breakVariant
// reports).
func edits(es ...func(string) string) func(string) string {
	return func(orig string) string {
		s := orig
		for _, e := range es {
			next := e(s)
			if next == s {
				return orig
			}
			s = next
		}
		return s
	}
}

// replaceLast returns an edit that replaces the last old with new.
func replaceLast(old, new string) func(string) string {
	return func(s string) string {
		i := strings.LastIndex(s, old)
		if i < 0 {
			return s
		}
		return s[:i] + new + s[i+len(old):]
	}
}

// TestChecksCatchBreakage breaks one thing at a time in an in-memory copy of
// a variant and asserts that loading or the named check reports it.
func TestChecksCatchBreakage(t *testing.T) {
	checks := map[string]func(*variant) []error{}
	for _, c := range variantChecks {
		checks[c.name] = c.fn
	}
	const gpu, cpu = "gpu-vllm", "cpu-replicas"
	cases := []struct {
		name    string
		variant string
		file    string
		edit    func(string) string
		check   string // "" means loading must fail
		want    string // in the error
	}{
		// Strict decoding and the kustomization.
		{"misspelt field", gpu, "vllm.yaml", replace("containerPort: 8000", "containerPrt: 8000"), "", "containerPrt"},
		{"misspelt nested field", cpu, "engine.yaml", replace("readOnlyRootFilesystem: true", "readOnlyRootFileSystem: true"), "", "readOnlyRootFileSystem"},
		{"duplicate key", cpu, "engine.yaml", replace("  serviceName: stepflash-engine\n", "  serviceName: stepflash-engine\n  serviceName: stepflash-engine\n"), "", "serviceName"},
		{"unknown kind", gpu, "gateway.yaml", replace("kind: PodDisruptionBudget", "kind: PodDisruptionBudgets"), "", "unknown kind"},
		{"unknown apiVersion", gpu, "gateway.yaml", replace("apiVersion: policy/v1", "apiVersion: policy/v1beta1"), "", "unknown kind"},
		{"kustomization field", gpu, "kustomization.yaml", replace("resources:", "resource:"), "", "resource"},
		{"missing resource", cpu, "engine.yaml", func(string) string { return "" }, "", "engine.yaml"},
		{"unlisted file", cpu, "kustomization.yaml", replace("  - engine.yaml\n", ""), "", "not listed"},
		// Namespaces.
		{"object namespace", cpu, "engine.yaml", replace("namespace: stepflash-cpu", "namespace: default"), "namespace", "default"},
		// Selectors and Services.
		{"template labels", gpu, "vllm.yaml", replace("        app.kubernetes.io/component: model-server\n        app.kubernetes.io/part-of", "        app.kubernetes.io/component: server\n        app.kubernetes.io/part-of"), "selectors", "does not match"},
		{"no service", gpu, "vllm.yaml", replace("    app.kubernetes.io/name: vllm\n    app.kubernetes.io/component: model-server\n  ports", "    app.kubernetes.io/name: vllm-x\n  ports"), "selectors", "no Service selects"},
		{"statefulset service", cpu, "engine.yaml", replace("serviceName: stepflash-engine", "serviceName: stepflash"), "selectors", "headless"},
		{"target port", cpu, "gateway.yaml", replace("targetPort: http", "targetPort: web"), "service ports", "targetPort"},
		// Security.
		{"run as root", gpu, "vllm.yaml", replace("          securityContext:\n            runAsNonRoot: true\n            runAsUser: 65532", "          securityContext:\n            runAsNonRoot: true\n            runAsUser: 0"), "security context", "runAsUser"},
		{"writable root", cpu, "gateway.yaml", replace("readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false"), "security context", "readOnlyRootFilesystem"},
		{"escalation", cpu, "engine.yaml", replace("allowPrivilegeEscalation: false", "allowPrivilegeEscalation: true"), "security context", "allowPrivilegeEscalation"},
		{"capabilities", gpu, "gateway.yaml", replace("                - ALL", "                - NET_RAW"), "security context", "capabilities"},
		{"seccomp", gpu, "vllm.yaml", replace("            seccompProfile:\n              type: RuntimeDefault", "            seccompProfile:\n              type: Unconfined"), "security context", "seccompProfile"},
		// Probes.
		{"readiness path", cpu, "engine.yaml", replace("path: /health/ready\n              port: http\n            periodSeconds: 5", "path: /health\n              port: http\n            periodSeconds: 5"), "probes", "readiness probe path"},
		{"liveness path", gpu, "gateway.yaml", replace("path: /health\n              port: http\n            periodSeconds: 10", "path: /healthz\n              port: http\n            periodSeconds: 10"), "probes", "liveness probe path"},
		{"probe port", gpu, "gateway.yaml", replace("path: /health/ready\n              port: http", "path: /health/ready\n              port: 8080"), "probes", "probe port"},
		{"short startup", cpu, "engine.yaml", replace("failureThreshold: 180", "failureThreshold: 6"), "probes", "model pull"},
		// Images.
		{"latest", gpu, "vllm.yaml", replace("vllm/vllm-openai:v0.28.0", "vllm/vllm-openai:latest"), "images", ":latest"},
		{"no tag", cpu, "engine.yaml", replace("ghcr.io/stepflash/stepflash:v0.1.0", "ghcr.io/stepflash/stepflash"), "images", "no tag"},
		{"kustomize latest", cpu, "kustomization.yaml", replace("newTag: v0.1.0", "newTag: latest"), "images", "newTag"},
		// Scrape annotations.
		{"scrape off", cpu, "engine.yaml", replace(`prometheus.io/scrape: "true"`, `prometheus.io/scrape: "false"`), "scrape annotations", "prometheus.io/scrape"},
		{"scrape port", gpu, "vllm.yaml", replace(`prometheus.io/port: "8000"`, `prometheus.io/port: "9090"`), "scrape annotations", "prometheus.io/port"},
		// Resources, env and volumes.
		{"no memory limit", gpu, "gateway.yaml", replace("            limits:\n              cpu: \"2\"\n              memory: 512Mi", "            limits:\n              cpu: \"2\""), "resources", "memory limit"},
		{"limit below request", cpu, "engine.yaml", replace("          limits:\n              cpu: \"4\"\n              memory: 6Gi", "          limits:\n              cpu: \"4\"\n              memory: 1Gi"), "resources", "below its request"},
		{"undefined arg env", cpu, "engine.yaml", replace("- $(STEPFLASH_THREADS)", "- $(THREADS)"), "env and volumes", "undefined env var THREADS"},
		{"required secret", gpu, "gateway.yaml", replace("optional: true", "optional: false"), "env and volumes", "optional: true"},
		{"cache not mounted", cpu, "engine.yaml", replace("mountPath: /models", "mountPath: /cache"), "env and volumes", "STEPFLASH_CACHE"},
		{"db secret required", gpu, "gateway.yaml", replace("key: dsn\n                  optional: true", "key: dsn\n                  optional: false"), "env and volumes", "optional: true"},
		{"db secret name", cpu, "gateway.yaml", replace("name: stepflash-db", "name: postgres"), "env and volumes", "STEPFLASH_DB"},
		// The key store and ledger.
		{"no data volume", cpu, "gateway.yaml", edits(replace(dataMount, ""), replace(dataVolume, "")), "data dir", "STEPFLASH_DATA /data is not on a writable volume"},
		{"no engine data volume", cpu, "engine.yaml", edits(replace(dataMount, ""), replace(dataVolume, "")), "data dir", "STEPFLASH_DATA /data is not on a writable volume"},
		{"no data dir", cpu, "engine.yaml", replace("            - name: STEPFLASH_DATA\n              value: /data\n", ""), "data dir", "read-only root filesystem"},
		{"data on a ConfigMap", gpu, "gateway.yaml", replace("value: /data", "value: /etc/stepflash"), "data dir", "STEPFLASH_DATA /etc/stepflash is not on a writable volume"},
		{"data mount read-only", cpu, "engine.yaml", replace(dataMount, dataMount+"              readOnly: true\n"), "data dir", "not on a writable volume"},
		{"data beside the mount", gpu, "gateway.yaml", replace("value: /data", "value: /database"), "data dir", "not on a writable volume"},
		{"ledger not shared", gpu, "gateway.yaml", replace(dbEnv, ""), "data dir", "not shared"},
		{"--data hides STEPFLASH_DB", cpu, "gateway.yaml", replace(`"--addr", "0.0.0.0:8000"]`, `"--addr", "0.0.0.0:8000", "--data", "/data"]`), "data dir", "STEPFLASH_DB is ignored"},
		{"--data and --db", cpu, "engine.yaml", replace("            - --shutdown-timeout\n", "            - --data\n            - /data\n            - --db\n            - postgres://db/x\n            - --shutdown-timeout\n"), "data dir", "both --data and --db"},
		// Disruption budgets.
		{"no gateway pdb", gpu, "gateway.yaml", replaceLast("  selector:\n    matchLabels:\n      app.kubernetes.io/name: stepflash\n      app.kubernetes.io/component: gateway\n", "  selector:\n    matchLabels:\n      app.kubernetes.io/name: nothing\n"), "disruption budgets", "selects 0"},
		{"pdb blocks", gpu, "gateway.yaml", replace("minAvailable: 1", "minAvailable: 2"), "disruption budgets", "blocks every eviction"},
		// The gateway config.
		{"config key", gpu, "gateway.yaml", replace(`"routing": "prefix",`, `"routng": "prefix",`), "gateway config", "unknown field"},
		{"routing", cpu, "gateway.yaml", replace(`"routing": "prefix",`, `"routing": "random",`), "gateway config", "routing"},
		{"upstream host", gpu, "gateway.yaml", replace("http://vllm:8000/v1", "http://vllm-server:8000/v1"), "gateway config", "names no Service"},
		{"upstream namespace", cpu, "gateway.yaml", replace("stepflash-engine.stepflash-cpu.svc", "stepflash-engine.default.svc"), "gateway config", "neither"},
		{"no /v1", gpu, "gateway.yaml", replace("http://vllm:8000/v1", "http://vllm:8000"), "gateway config", "/v1"},
		{"upstream port", cpu, "gateway.yaml", replace("svc.cluster.local:8000/v1", "svc.cluster.local:9000/v1"), "gateway config", "port 9000"},
		{"dns on ClusterIP", cpu, "engine.yaml", replace("  clusterIP: None\n", ""), "gateway config", "not headless"},
		{"api key env", gpu, "gateway.yaml", replace(`"api_key_env": "VLLM_API_KEY"`, `"api_key_env": "VLLM_KEY"`), "gateway config", "VLLM_KEY"},
		{"upstream model", gpu, "gateway.yaml", replace(`"model": "Qwen/Qwen3-8B"`, `"model": "Qwen/Qwen3-4B"`), "gateway config", "not served"},
		{"timeout", cpu, "gateway.yaml", replace(`"idle": "120s"`, `"idle": "2 minutes"`), "gateway config", "timeouts.idle"},
		{"config mount", gpu, "gateway.yaml", replace("mountPath: /etc/stepflash", "mountPath: /etc/config"), "gateway config", "nothing is mounted"},
		{"config key name", cpu, "gateway.yaml", replace("  config.json: |", "  gateway.json: |"), "gateway config", "no key config.json"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v, err := breakVariant(t, tc.variant, tc.file, tc.edit)
			if tc.check == "" {
				if err == nil {
					t.Fatalf("loading succeeded, want an error mentioning %q", tc.want)
				}
				if !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("loading failed with %v, want it to mention %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatalf("loading failed: %v", err)
			}
			errs := checks[tc.check](v)
			if len(errs) == 0 {
				t.Fatalf("check %q passed, want an error mentioning %q", tc.check, tc.want)
			}
			if !strings.Contains(joinErrs(errs), tc.want) {
				t.Fatalf("check %q reported%s\nwant an error mentioning %q", tc.check, joinErrs(errs), tc.want)
			}
		})
	}
}

// The data dir's mount, volume and the gateway's STEPFLASH_DB, as the
// manifests write them (the breakage cases remove them).
const (
	dataMount  = "            - name: data\n              mountPath: /data\n"
	dataVolume = "        - name: data\n          emptyDir:\n            sizeLimit: 1Gi\n"
	dbEnv      = "            - name: STEPFLASH_DB\n              valueFrom:\n                secretKeyRef:\n                  name: stepflash-db\n                  key: dsn\n                  optional: true\n"
)

// TestDataDirAlternatives: checkDataDir accepts the other ways of giving
// serve a writable store, so that its failures above are not a check that
// fails everything.
func TestDataDirAlternatives(t *testing.T) {
	const cpu = "cpu-replicas"
	for _, tc := range []struct {
		name, variant, file string
		edit                func(string) string
	}{
		{"--data arg", cpu, "engine.yaml", edits(
			replace("            - name: STEPFLASH_DATA\n              value: /data\n", ""),
			replace("            - --shutdown-timeout\n", "            - --data=/data\n            - --shutdown-timeout\n"))},
		{"data on the model volume", cpu, "engine.yaml", edits(
			replace("value: /data", "value: /models/ledger"),
			replace(dataMount, ""), replace(dataVolume, ""))},
		{"--db postgres, no volume", cpu, "engine.yaml", edits(
			replace("            - name: STEPFLASH_DATA\n              value: /data\n", ""),
			replace(dataMount, ""), replace(dataVolume, ""),
			replace("            - --shutdown-timeout\n", "            - --db\n            - postgres://stepflash@db:5432/stepflash\n            - --shutdown-timeout\n"))},
		{"STEPFLASH_DB postgres literal", cpu, "gateway.yaml", edits(
			replace(dbEnv, "            - name: STEPFLASH_DB\n              value: postgres://stepflash@db:5432/stepflash\n"),
			replace("value: /data", "value: /nowhere"))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := breakVariant(t, tc.variant, tc.file, tc.edit)
			if err != nil {
				t.Fatal(err)
			}
			if errs := checkDataDir(v); len(errs) > 0 {
				t.Errorf("%d problem(s):%s", len(errs), joinErrs(errs))
			}
		})
	}
}

func TestPrometheusCatchesBreakage(t *testing.T) {
	data, err := os.ReadFile(prometheusFile)
	if err != nil {
		t.Fatal(err)
	}
	var vs []*variant
	for _, name := range variantNames(t) {
		vs = append(vs, mustLoad(t, name))
	}
	cases := []struct {
		name, old, new, want string
	}{
		{"misspelt field", "target_label: __metrics_path__", "targetlabel: __metrics_path__", "targetlabel"},
		{"keeps everything", `regex: "true"`, `regex: ".*"`, "without prometheus.io/scrape"},
		{"keeps nothing", `regex: "true"`, `regex: "yes"`, "kept false"},
		{"ignores the port", "target_label: __address__", "target_label: __address_port__", "want kept"},
		{"no IPv6", `replacement: "[$2]:$1"`, `replacement: "$2:$1"`, "fd00:10:244::7"},
		{"ignores the path", "target_label: __metrics_path__", "target_label: metrics_path", "want kept"},
		{"scrapes pending pods", "regex: Pending|Succeeded|Failed|Completed", "regex: Succeeded|Failed|Completed", "Pending"},
		{"namespace not watched", "            - stepflash-cpu\n", "", "not watched"},
		{"role", "- role: pod", "- role: endpoints", "role: pod"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			broken := strings.Replace(string(data), tc.old, tc.new, 1)
			if broken == string(data) {
				t.Fatalf("the edit changed nothing (%q not found)", tc.old)
			}
			cfg, err := parsePromConfig([]byte(broken))
			var msg string
			if err != nil {
				msg = err.Error()
			} else {
				msg = joinErrs(checkPrometheus(cfg, vs))
			}
			if !strings.Contains(msg, tc.want) {
				t.Fatalf("got %q, want an error mentioning %q", msg, tc.want)
			}
		})
	}
}

func TestDockerfileCatchesBreakage(t *testing.T) {
	df, err := os.ReadFile(dockerfilePath)
	if err != nil {
		t.Fatal(err)
	}
	gomod, err := os.ReadFile(goModPath)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, old, new, want string
	}{
		{"cgo", "CGO_ENABLED=0 GOOS", "CGO_ENABLED=1 GOOS", "CGO_ENABLED=0"},
		{"trimpath", "go build -trimpath", "go build", "-trimpath"},
		{"simd", "GOARCH=${TARGETARCH} GOEXPERIMENT=simd", "GOARCH=${TARGETARCH}", "GOEXPERIMENT=simd"},
		{"root", "USER 65532:65532", "USER 0:0", "non-root"},
		{"named user", "USER 65532:65532", "USER nonroot", "numeric"},
		{"no user", "USER 65532:65532\n", "", "USER"},
		{"shell base", "FROM gcr.io/distroless/static-debian12:nonroot", "FROM debian:12-slim", "no shell"},
		{"run in final", "EXPOSE 8000", "RUN mkdir /x\nEXPOSE 8000", "RUN mkdir"},
		{"port", "EXPOSE 8000", "EXPOSE 8080", "EXPOSE 8000"},
		{"latest base", "golang:1.26.8-bookworm AS", "golang:latest AS", ":latest"},
		{"old go", "golang:1.26.8-bookworm AS", "golang:1.25.5-bookworm AS", "go.mod's go version"},
		{"single stage", "FROM gcr.io/distroless/static-debian12:nonroot\nCOPY --from=build /out/stepflash /stepflash\n", "", "multi-stage"},
		{"shell entrypoint", `ENTRYPOINT ["/stepflash"]`, `ENTRYPOINT /stepflash`, "exec form"},
		{"cache", "ENV STEPFLASH_CACHE=/models", "ENV STEPFLASH_CACHE=/tmp", "STEPFLASH_CACHE"},
		{"scratch without certs", "FROM gcr.io/distroless/static-debian12:nonroot", "FROM scratch", "CA certificates"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			broken := strings.Replace(string(df), tc.old, tc.new, 1)
			if broken == string(df) {
				t.Fatalf("the edit changed nothing (%q not found)", tc.old)
			}
			msg := joinErrs(checkDockerfile(broken, string(gomod)))
			if !strings.Contains(msg, tc.want) {
				t.Fatalf("got %q, want an error mentioning %q", msg, tc.want)
			}
		})
	}
	if errs := checkDockerignore("bin/\n*.gguf\n"); len(errs) == 0 {
		t.Error("checkDockerignore accepts a file without .git")
	}
}
