// Package doctor is the preflight an operator runs before pointing the
// harness at a host (`ccci doctor`): it reads what a run will meet — the
// Incus API and who it takes us for, the project, image and profile, the
// RAM arithmetic, the reference, other instances, the two repos, the
// target's install.md and the -timeout a run needs — and says, row by row,
// whether a run could start and what to fix. It creates and changes
// nothing: only GET requests reach Incus, and the repos are read.
package doctor

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/cc-ci/acceptance/helpers/config"
	"github.com/cc-ci/acceptance/helpers/incus"
	"github.com/cc-ci/acceptance/helpers/installdoc"
	"github.com/cc-ci/acceptance/helpers/judge"
	"github.com/cc-ci/acceptance/helpers/machine"
	"github.com/cc-ci/acceptance/helpers/probe"
	"github.com/cc-ci/acceptance/helpers/redact"
	"github.com/cc-ci/acceptance/helpers/size"
	"github.com/cc-ci/acceptance/helpers/sshaccess"
	"github.com/cc-ci/acceptance/helpers/target"
)

// Status of one row.
type Status string

const (
	OK      Status = "ok"
	Blocker Status = "BLOCKER" // a run would refuse to start, or fail for a reason of the host
	Note    Status = "note"    // worth knowing; a run can start
)

// Row is one check.
type Row struct {
	Status Status
	Check  string
	Detail string
	Fix    string // what to do about a blocker or a note
}

// Report is every row, in the order a run meets them.
type Report struct{ Rows []Row }

// Ready: no blocker — a run could start.
func (r *Report) Ready() bool {
	return !slices.ContainsFunc(r.Rows, func(x Row) bool { return x.Status == Blocker })
}

// add appends a row; a detail of several lines (what a server answered)
// is joined into one, so the table stays a table.
func (r *Report) add(s Status, check, detail, fix string) {
	detail = strings.Join(strings.Fields(detail), " ")
	r.Rows = append(r.Rows, Row{s, check, detail, fix})
}

// Write prints the table.
func (r *Report) Write(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STATUS\tCHECK\tDETAIL\tFIX")
	for _, x := range r.Rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", x.Status, x.Check, x.Detail, x.Fix)
	}
	tw.Flush()
	if r.Ready() {
		fmt.Fprintln(w, "doctor: a run could start")
	} else {
		fmt.Fprintln(w, "doctor: a run could NOT start: fix the BLOCKER rows")
	}
}

// Options are what the doctor examines.
type Options struct {
	Config  *config.Config
	Timeout time.Duration // the -timeout the run will be given (0: report only what it needs)
	Redact  *redact.Redactor
}

// Extensions the harness's calls rely on (internal/version/api.go names them).
var requiredExtensions = []string{"projects", "instances", "instance_all_projects", "container_exec_recording", "file_delete", "auth_user"}

// Run examines the host and the target. It never fails: every problem is a row.
func Run(ctx context.Context, o Options) *Report {
	r := &Report{}
	cfg := o.Config
	c, err := incus.New(cfg.Incus.Config(cfg.Incus.Transport))
	if err != nil {
		r.add(Blocker, "Incus settings", err.Error(), "fix the CCCI_INCUS_* settings (docs/configuration.md)")
	} else if r.api(ctx, c, cfg) {
		r.project(ctx, c, cfg)
		r.image(ctx, c, cfg)
		r.profile(ctx, c, cfg)
		r.ram(ctx, c, cfg)
		r.reference(ctx, c, cfg)
		r.neighbours(ctx, c, cfg)
	}
	steps := r.target(ctx, cfg, o.Redact)
	r.timeout(cfg, steps, o.Timeout)
	return r
}

// api: reachable, trusted, with the extensions the harness uses.
func (r *Report) api(ctx context.Context, c *incus.Client, cfg *config.Config) bool {
	srv, err := c.Server(ctx)
	if err != nil {
		r.add(Blocker, "Incus API", err.Error(), "check CCCI_INCUS_URL, the pinned server certificate and that the client certificate is in the server's trust store")
		return false
	}
	r.add(OK, "Incus API", fmt.Sprintf("%s: trusted, %s %s", c.Endpoint, srv.Environment.ServerName, srv.Environment.ServerVersion), "")
	need := requiredExtensions
	if cfg.Machine.InstanceType == incus.VirtualMachine {
		need = append(slices.Clone(need), "virtual-machines")
	}
	var missing []string
	for _, e := range need {
		if !slices.Contains(srv.APIExtensions, e) {
			missing = append(missing, e)
		}
	}
	if len(missing) > 0 {
		r.add(Blocker, "API extensions", "missing: "+strings.Join(missing, ", "), "the harness needs Incus 6.0 or later")
	} else {
		r.add(OK, "API extensions", strings.Join(need, ", "), "")
	}
	return true
}

func (r *Report) project(ctx context.Context, c *incus.Client, cfg *config.Config) {
	if !slices.Contains(cfg.Guardrails.AllowedProjects, cfg.Machine.Project) {
		r.add(Blocker, "project", cfg.Machine.Project+" is not in CCCI_ALLOWED_PROJECTS", "allow it, or set CCCI_PROJECT")
		return
	}
	if _, err := c.Project(ctx, cfg.Machine.Project); err != nil {
		r.add(Blocker, "project", fmt.Sprintf("%s: %v", cfg.Machine.Project, err), "create it (incus project create "+cfg.Machine.Project+") or set CCCI_PROJECT")
		return
	}
	r.add(OK, "project", cfg.Machine.Project+" exists and is allowed", "")
}

// image: the alias resolves in the project, to an image of the instance
// type, whose secure-boot requirement the run's setting meets.
func (r *Report) image(ctx context.Context, c *incus.Client, cfg *config.Config) {
	a, err := c.ImageAlias(ctx, cfg.Machine.Project, cfg.Machine.Image)
	if err != nil {
		r.add(Blocker, "image", fmt.Sprintf("%q in project %s: %v", cfg.Machine.Image, cfg.Machine.Project, err),
			"import or copy the image into the project (incus image copy … --target-project "+cfg.Machine.Project+" --copy-aliases), or set CCCI_IMAGE")
		return
	}
	img, err := c.Image(ctx, cfg.Machine.Project, a.Target)
	if err != nil {
		r.add(Blocker, "image", fmt.Sprintf("%q → %.12s: %v", cfg.Machine.Image, a.Target, err), "")
		return
	}
	if img.Type != "" && img.Type != cfg.Machine.InstanceType {
		r.add(Blocker, "image", fmt.Sprintf("%q is a %s image; CCCI_INSTANCE_TYPE is %s (Incus refuses: \"Requested image's type doesn't match instance type\")",
			cfg.Machine.Image, img.Type, cfg.Machine.InstanceType), "use an image of type "+cfg.Machine.InstanceType+", or set CCCI_INSTANCE_TYPE="+img.Type)
		return
	}
	detail := fmt.Sprintf("%q → %.12s (%s)", cfg.Machine.Image, img.Fingerprint, img.Type)
	if cfg.Machine.InstanceType == incus.VirtualMachine && img.Properties["requirements.secureboot"] == "false" && cfg.Machine.SecureBoot != "false" {
		r.add(Blocker, "image", detail+": declares requirements.secureboot=false, but CCCI_VM_SECUREBOOT="+cfg.Machine.SecureBoot+" (Incus refuses to start it)",
			"set CCCI_VM_SECUREBOOT=false")
		return
	}
	r.add(OK, "image", detail, "")
}

// profile: the default profile gives the machine a root disk and a NIC, and
// does not protect instances from deletion (teardown would fail).
func (r *Report) profile(ctx context.Context, c *incus.Client, cfg *config.Config) {
	p, err := c.Profile(ctx, cfg.Machine.Project, "default")
	if err != nil {
		r.add(Blocker, "default profile", err.Error(), "")
		return
	}
	var disk, nic bool
	for _, d := range p.Devices {
		disk = disk || d["type"] == "disk" && d["path"] == "/"
		nic = nic || d["type"] == "nic"
	}
	switch {
	case !disk:
		r.add(Blocker, "default profile", "no root disk device", "incus profile device add default root disk path=/ pool=POOL --project "+cfg.Machine.Project)
	case !nic:
		r.add(Blocker, "default profile", "no NIC device", "incus profile device add default eth0 nic network=NET --project "+cfg.Machine.Project)
	case p.Config["security.protection.delete"] == "true":
		r.add(Blocker, "default profile", "security.protection.delete=true: teardown could not delete the machine",
			"incus profile unset default security.protection.delete --project "+cfg.Machine.Project)
	default:
		cpu := p.Config["limits.cpu"]
		if cpu == "" {
			cpu = "not limited"
		}
		r.add(OK, "default profile", "root disk, NIC; CPU "+cpu, "")
	}
}

// ram: who we are to Incus, and the guardrail's sum with the new machine.
func (r *Report) ram(ctx context.Context, c *incus.Client, cfg *config.Config) {
	id, err := c.Identity(ctx)
	if err != nil {
		r.add(Blocker, "credentials", err.Error(), "")
		return
	}
	g := cfg.Guardrails
	switch {
	case id.SeesEverything():
		r.add(OK, "credentials", id.Description+": every project is listed, the RAM sum is whole", "")
	case g.OtherTenantsStated:
		r.add(Note, "credentials", id.Description+": the projects it cannot see are counted as CCCI_OTHER_TENANTS_RAM="+size.Format(g.OtherTenantsRAM), "keep that figure true")
	default:
		r.add(Blocker, "credentials", id.Description+": Incus leaves the projects it cannot see out of every listing, so the RAM sum is partial",
			"state their RAM in CCCI_OTHER_TENANTS_RAM, or use an unrestricted certificate")
	}
	rep, err := machine.RAM(ctx, c, g, cfg.Machine.Memory)
	switch {
	case err != nil:
		r.add(Blocker, "RAM guardrail", err.Error(), "")
	case !rep.Fits:
		r.add(Blocker, "RAM guardrail", rep.String(), "stop something, or wait for it to end")
	default:
		r.add(OK, "RAM guardrail", rep.String(), "")
	}
}

// reference: the running reference system, read without running anything in it.
func (r *Report) reference(ctx context.Context, c *incus.Client, cfg *config.Config) {
	if cfg.Expect.Reference == "" {
		r.add(Note, "reference", "CCCI_REFERENCE is empty: C1 cannot compare the rebuilt system with a running one", "")
		return
	}
	project, name, _ := strings.Cut(cfg.Expect.Reference, "/")
	in, err := c.Instance(ctx, project, name)
	if err != nil {
		r.add(Blocker, "reference", fmt.Sprintf("%s: %v", cfg.Expect.Reference, err), "set CCCI_REFERENCE to the running cc-ci (project/name)")
		return
	}
	if in.Status != "Running" {
		r.add(Blocker, "reference", cfg.Expect.Reference+" is "+in.Status, "start it: C1 compares with the running system")
		return
	}
	sys, err := probe.CurrentSystemByFile(ctx, c, project, name)
	if err != nil {
		r.add(Blocker, "reference", fmt.Sprintf("%s: /run/current-system: %v", cfg.Expect.Reference, err), "")
		return
	}
	r.add(OK, "reference", fmt.Sprintf("%s running, limits.memory %s, system %s", cfg.Expect.Reference, in.ExpandedConfig["limits.memory"], sys), "")
}

// neighbours: instances in the project the harness did not create. The
// plan's clean-room proof starts from no earlier throwaway; the harness
// never deletes what it did not create, so the operator does.
func (r *Report) neighbours(ctx context.Context, c *incus.Client, cfg *config.Config) {
	ins, err := c.Instances(ctx, cfg.Machine.Project)
	if err != nil {
		r.add(Blocker, "other instances", err.Error(), "")
		return
	}
	l := machine.Labels{Prefix: cfg.Guardrails.LabelPrefix}
	var others []string
	for _, in := range ins {
		switch {
		case cfg.Machine.Project+"/"+in.Name == cfg.Expect.Reference:
		case l.Marked(&in):
			r.add(Note, "other instances", fmt.Sprintf("%s/%s: a harness machine of run %s (expires %s); the reaper deletes it once expired",
				cfg.Machine.Project, in.Name, in.Config[l.RunID()], in.Config[l.ExpiresAt()]), "")
		default:
			others = append(others, in.Name)
		}
	}
	for _, n := range others {
		r.add(Note, "other instances", fmt.Sprintf("%s/%s was not created by the harness: it is never touched", cfg.Machine.Project, n),
			fmt.Sprintf("if it is an earlier throwaway, remove it yourself: incus delete %s --project %s --force", n, cfg.Machine.Project))
	}
	if len(others) == 0 {
		r.add(OK, "other instances", "none besides the reference", "")
	}
}

// target: both repos read with the configured credentials (and the secrets
// repo refused without them), install.md linted. Returns its blocks.
func (r *Report) target(ctx context.Context, cfg *config.Config, red *redact.Redactor) int {
	if !cfg.HasTarget() {
		r.add(Blocker, "target", "CCCI_BASE_REPO_URL, CCCI_SECRETS_REPO_URL and CCCI_AGE_KEY_FILE must all be set", "")
		return 0
	}
	key, err := target.LoadAgeKey(cfg.Target.AgeKeyFile, red)
	if err != nil {
		r.add(Blocker, "bootstrap age key", err.Error(), "")
		return 0
	}
	r.add(OK, "bootstrap age key", cfg.Target.AgeKeyFile+": "+key.Recipient, "")
	dir, err := os.MkdirTemp("", "ccci-doctor-")
	if err != nil {
		r.add(Blocker, "repos", err.Error(), "")
		return 0
	}
	defer os.RemoveAll(dir)
	fctx, cancel := context.WithTimeout(ctx, cfg.Timeouts.StepTimeout)
	defer cancel()
	repos, err := target.Fetch(fctx, dir, cfg.Target, key, red)
	if err != nil {
		r.add(Blocker, "repos", red.Redact(err.Error()), "check the URLs and the read credential")
		return 0
	}
	r.add(OK, "repos", fmt.Sprintf("base %s at %.12s, secrets at %.12s", cfg.Target.BaseRepoURL, repos.BaseCommit, repos.SecretsCommit), "")
	if refused, answer, err := target.AnonymousRead(fctx, target.AnonymousOf(cfg.Target)); err != nil || !refused {
		detail := answer
		if err != nil {
			detail = err.Error()
		}
		r.add(Blocker, "secrets repo private", red.Redact(detail), "the secrets repo must refuse an anonymous reader (C1)")
	} else {
		r.add(OK, "secrets repo private", answer, "")
	}
	src, err := target.ReadBase(repos, target.InstallDoc)
	if err != nil {
		r.add(Blocker, "install.md", err.Error(), "")
		return 0
	}
	vals := target.Placeholders(cfg.Target.BaseRepoURL, cfg.Target.SecretsRepoURL, cfg.Target.Domain, cfg.Target.Gateway, target.MachineStandIn)
	doc, err := installdoc.Parse(target.InstallDoc, []byte(src), vals)
	if err != nil {
		r.add(Blocker, "install.md", strings.ReplaceAll(err.Error(), "\n", "; "), "docs/writing-install-md.md")
		return 0
	}
	if p := installdoc.Problems(doc, cfg.Target.AgeKeyPath); len(p) > 0 {
		r.add(Blocker, "install.md", strings.Join(p, "; "), "docs/writing-install-md.md")
		return 0
	}
	r.add(OK, "install.md", fmt.Sprintf("%d blocks, linted", len(doc.Blocks)), "")
	r.sshAfterSwitch(fctx, cfg, repos, red)
	return len(doc.Blocks)
}

// sshAfterSwitch: the target's sshd, as the switch will leave it, lets the
// run back in (sshaccess.AfterSwitch, the run's own check before its install).
func (r *Report) sshAfterSwitch(ctx context.Context, cfg *config.Config, repos *target.Repos, red *redact.Redactor) {
	const check = "sshd after the switch"
	problems, unjudged, err := sshaccess.AfterSwitch(ctx, repos, cfg.Target.SecretsRepoURL, cfg.Target.NixOSHost, cfg.Machine.SSHUser, cfg.Machine.SSHPort, cfg.Timeouts.StepTimeout, red)
	switch {
	case err != nil:
		r.add(Note, check, "not judged: "+red.Redact(err.Error()), "the run judges it again before its install, and notes why it could not")
	case unjudged != "":
		r.add(Note, check, "not judged: "+unjudged, "")
	case len(problems) > 0:
		r.add(Blocker, check, judge.List(problems), "the run logs in as CCCI_SSH_USER ("+cfg.Machine.SSHUser+") with a key in its ~/.ssh/authorized_keys on CCCI_SSH_PORT ("+strconv.Itoa(cfg.Machine.SSHPort)+"): keep that open in the target's services.openssh (docs/pointing-at-cc-ci.md)")
	default:
		r.add(OK, check, fmt.Sprintf("%s's key in ~/.ssh/authorized_keys, port %d: let in", cfg.Machine.SSHUser, cfg.Machine.SSHPort), "")
	}
}

// timeout: the -timeout a run needs for these bounds and this install.
func (r *Report) timeout(cfg *config.Config, steps int, given time.Duration) {
	need := cfg.Timeouts.TimeoutNeeded(steps, 0)
	b := cfg.Timeouts.Budget(steps, need)
	switch {
	case given == 0:
		r.add(Note, "-timeout", fmt.Sprintf("a run needs -timeout %s (%s)", need, b), "pass it to go test (or TIMEOUT= to make acceptance-ci)")
	case given < need:
		r.add(Blocker, "-timeout", fmt.Sprintf("%s cannot hold %s", given, cfg.Timeouts.Budget(steps, given)), fmt.Sprintf("run with -timeout %s", need))
	default:
		r.add(OK, "-timeout", fmt.Sprintf("%s holds %s", given, cfg.Timeouts.Budget(steps, given)), "")
	}
}
