//! The library meets real projects without weakening a gate (issue 19): the offline SAST packs
//! (their annotated samples, and planted injections failing the job with no network), each
//! language's gates still biting (a planted lint error, a failing test, coverage under the
//! threshold), oasdiff catching a breaking API change, and the corpus projects of the README's test
//! command (one per language, fetched from the package registries) giving their recorded verdicts.
//! scripts/corpus.sh runs the whole corpus.

use std::path::Path;
use std::process::Command;

use ci_templates::corpus;
use ci_templates::local_run::{LocalRepo, LocalRun, PipelineKind, path_with_tools};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
const SAST_SAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sast");

fn fixture(name: &str) -> LocalRepo {
    LocalRepo::prepare(&Path::new(FIXTURES).join(name)).expect("fixture repository")
}

fn sample(file: &str) -> String {
    std::fs::read_to_string(Path::new(SAST_SAMPLES).join(file)).unwrap()
}

fn mr_run(repo: &LocalRepo, jobs: &[&str], extra: &[(&str, &str)]) -> LocalRun {
    repo.run_of(jobs, &PipelineKind::MergeRequest, extra)
        .unwrap()
}

/// Nothing may leave the machine: every proxy points at a closed port.
const NO_NETWORK: &[(&str, &str)] = &[
    ("HTTPS_PROXY", "http://127.0.0.1:9"),
    ("HTTP_PROXY", "http://127.0.0.1:9"),
    ("https_proxy", "http://127.0.0.1:9"),
    ("http_proxy", "http://127.0.0.1:9"),
];

/// Each pack as the sast job writes it (the heredoc of `.sast-rules-<lang>`), checked with
/// `semgrep --test` against annotated samples: every `ruleid:` line found, no `ok:` line flagged.
#[test]
fn each_offline_rule_pack_finds_its_samples_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    ci_templates::render(dir.path()).unwrap();
    let tests = dir.path().join("semgrep-test");
    std::fs::create_dir_all(&tests).unwrap();
    for (lang, sample_file, ext) in [
        ("python", "python.py", "py"),
        ("javascript", "javascript.js", "js"),
        ("go", "go.go", "go"),
        ("rust", "rust.rs", "rs"),
    ] {
        let text =
            std::fs::read_to_string(dir.path().join(format!("templates/sast/{lang}.yml"))).unwrap();
        let yaml: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
        let script = yaml[format!(".sast-rules-{lang}")]["script"][0]
            .as_str()
            .unwrap();
        // `cat > .sast-rules/<lang>.yml <<'RULES'` … `RULES`
        let body: Vec<&str> = script
            .lines()
            .skip(1)
            .take_while(|l| *l != "RULES")
            .collect();
        assert!(body.len() > 20, "{lang}: {script}");
        std::fs::write(tests.join(format!("{lang}.yaml")), body.join("\n")).unwrap();
        std::fs::copy(
            Path::new(SAST_SAMPLES).join(sample_file),
            tests.join(format!("{lang}.{ext}")),
        )
        .unwrap();
    }
    let out = Command::new("semgrep")
        .args(["--test", "--metrics=off", "--disable-version-check"])
        .arg(&tests)
        .env("PATH", path_with_tools())
        .envs(NO_NETWORK.iter().copied())
        .output()
        .expect("semgrep (./scripts/setup-test-env.sh)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("All tests passed"), "{text}");
}

/// The plan's three injections (subprocess with shell=True on request data, eval of input, SQL
/// by concatenation) and their JavaScript, Go and Rust forms fail the sast job, with every proxy
/// closed: the packs are in the library, nothing is downloaded.
#[test]
fn planted_injections_fail_the_offline_sast_job_in_each_language() {
    for (fixture_name, path, sample_file, rules) in [
        (
            "python-service",
            "app/handlers.py",
            "python.py",
            &[
                "platform.python.subprocess-shell-with-input",
                "platform.python.eval-of-input",
                "platform.python.sql-built-from-strings",
            ][..],
        ),
        (
            "node-service",
            "src/admin.js",
            "javascript.js",
            &[
                "platform.javascript.eval-of-dynamic-code",
                "platform.javascript.shell-command-from-input",
                "platform.javascript.sql-built-from-strings",
            ][..],
        ),
        (
            "go-service",
            "admin.go",
            "go.go",
            &[
                "platform.go.shell-command-from-input",
                "platform.go.sql-built-from-strings",
            ][..],
        ),
        (
            "rust-service",
            "src/admin.rs",
            "rust.rs",
            &[
                "platform.rust.shell-command-from-input",
                "platform.rust.sql-built-with-format",
            ][..],
        ),
    ] {
        let repo = fixture(fixture_name);
        let clean = mr_run(&repo, &["sast"], NO_NETWORK);
        assert_eq!(
            clean.verdict("sast"),
            "PASS",
            "{fixture_name}: {}",
            clean.output
        );
        repo.write(path, &sample(sample_file)).unwrap();
        let run = mr_run(&repo, &["sast"], NO_NETWORK);
        assert_eq!(
            run.verdict("sast"),
            "FAIL",
            "{fixture_name}: {}",
            run.output
        );
        assert!(run.output.contains("GATE FAILED"), "{}", run.output);
        let findings = repo.artifact("sast", "semgrep.json").unwrap();
        for rule in rules {
            assert!(
                findings.contains(rule),
                "{fixture_name}: {rule} not found:\n{findings}"
            );
        }
    }
    // A registry ruleset is refused, not fetched.
    let repo = fixture("go-service");
    let run = mr_run(&repo, &["sast"], &[("SAST_EXTRA_RULES", "p/default")]);
    assert_eq!(run.verdict("sast"), "FAIL");
    assert!(
        run.output.contains("which semgrep would download"),
        "{}",
        run.output
    );
}

fn assert_fails_with(run: &LocalRun, job: &str, text: &str) {
    assert_eq!(run.verdict(job), "FAIL", "{job}: {}", run.output);
    assert!(
        run.output.contains(text),
        "{job}: no {text:?}:\n{}",
        run.output
    );
}

/// Go: not gofmt-clean fails lint, a failing test fails unit-test (`go test | tee` no longer hides
/// it), untested code fails the coverage gate.
#[test]
fn go_gates_still_bite() {
    let repo = fixture("go-service");
    repo.write("lint_me.go", "package main\nfunc  badlyFormatted() {}\n")
        .unwrap();
    repo.write(
        "fail_test.go",
        "package main\n\nimport \"testing\"\n\nfunc TestPlantedFailure(t *testing.T) { t.Fatal(\"planted\") }\n",
    )
    .unwrap();
    let run = mr_run(&repo, &["lint", "unit-test"], &[]);
    assert_fails_with(&run, "lint", "GATE FAILED: not gofmt-formatted");
    assert_fails_with(&run, "unit-test", "GATE FAILED: unit tests failed");

    let repo = fixture("go-service");
    let mut untested = String::from("package main\n\n");
    for i in 0..40 {
        untested.push_str(&format!(
            "func untested{i}(x int) int {{\n\tif x > {i} {{\n\t\treturn x * {i}\n\t}}\n\treturn x + {i}\n}}\n\n"
        ));
    }
    repo.write("untested.go", &untested).unwrap();
    let run = mr_run(&repo, &["unit-test"], &[]);
    assert_fails_with(&run, "unit-test", "GATE FAILED: unit test coverage");
}

/// Python: an undefined name fails lint, a failing test fails unit-test (the coverage gate of
/// python-service is proven in `template_runs`).
#[test]
fn python_gates_still_bite() {
    let repo = fixture("python-service");
    repo.write("app/broken.py", "def f():\n    return undefined_name\n")
        .unwrap();
    repo.write(
        "tests/test_planted.py",
        "def test_planted_failure():\n    assert 1 == 2\n",
    )
    .unwrap();
    let run = mr_run(&repo, &["lint", "unit-test"], &[]);
    assert_eq!(run.verdict("lint"), "FAIL", "{}", run.output);
    assert!(run.output.contains("F821"), "{}", run.output);
    assert_eq!(run.verdict("unit-test"), "FAIL", "{}", run.output);
    assert!(
        run.output.contains("test_planted_failure"),
        "{}",
        run.output
    );
}

/// Node: a syntax error fails lint, a failing test fails unit-test, untested code fails the
/// coverage gate measured by c8 around the project's `npm test`.
#[test]
fn node_gates_still_bite() {
    let repo = fixture("node-service");
    let server = std::fs::read_to_string(repo.path().join("src/server.js")).unwrap();
    repo.write("src/server.js", &format!("{server}\nconst = ;\n"))
        .unwrap();
    repo.write(
        "test/planted.test.js",
        "const test = require('node:test');\nconst assert = require('node:assert');\ntest('planted failure', () => assert.strictEqual(1, 2));\n",
    )
    .unwrap();
    let run = mr_run(&repo, &["lint", "unit-test"], &[]);
    assert_eq!(run.verdict("lint"), "FAIL", "{}", run.output);
    assert_fails_with(&run, "unit-test", "GATE FAILED: unit tests failed");

    let repo = fixture("node-service");
    let mut untested = String::new();
    for i in 0..60 {
        untested.push_str(&format!(
            "function untested{i}(x) {{\n  if (x > {i}) {{\n    return x * {i};\n  }}\n  return x + {i};\n}}\n"
        ));
    }
    untested.push_str("module.exports = { untested0 };\n");
    repo.write("src/untested.js", &untested).unwrap();
    repo.write(
        "test/loads.test.js",
        "const test = require('node:test');\ntest('loads', () => { require('../src/untested.js'); });\n",
    )
    .unwrap();
    let run = mr_run(&repo, &["unit-test"], &[]);
    assert_fails_with(&run, "unit-test", "GATE FAILED: unit test coverage");
}

/// Rust: not rustfmt-clean fails lint, a failing test fails unit-test; where cargo-llvm-cov cannot
/// run, passing tests end in the warning state saying coverage was not measured (never a pass).
#[test]
fn rust_gates_still_bite_and_unmeasured_coverage_is_not_a_pass() {
    let repo = fixture("rust-service");
    let run = mr_run(&repo, &["unit-test"], &[]);
    if run.output.contains("detected: cargo-llvm-cov") {
        assert_eq!(run.verdict("unit-test"), "PASS", "{}", run.output);
    } else {
        assert_eq!(run.verdict("unit-test"), "WARN", "{}", run.output);
        assert!(
            run.output.contains("UNDETERMINED: coverage not measured"),
            "{}",
            run.output
        );
    }
    let lib = std::fs::read_to_string(repo.path().join("src/lib.rs")).unwrap();
    repo.write(
        "src/lib.rs",
        &format!("{lib}\n#[cfg(test)]\nmod planted {{\n    #[test]\n    fn planted_failure() {{ assert_eq!(1,   2); }}\n}}\n"),
    )
    .unwrap();
    let run = mr_run(&repo, &["lint", "unit-test"], &[]);
    assert_eq!(run.verdict("lint"), "FAIL", "{}", run.output);
    assert_fails_with(&run, "unit-test", "GATE FAILED: unit tests failed");
}

/// contract-test runs oasdiff for real: removing an operation the default branch serves fails the
/// merge request; adding one passes.
#[test]
fn oasdiff_catches_a_breaking_api_change() {
    let repo = fixture("go-service");
    let spec = "openapi: 3.0.3\ninfo:\n  title: go-service\n  version: 1.0.0\npaths:\n  /hello:\n    get:\n      parameters:\n        - name: name\n          in: query\n          schema:\n            type: string\n      responses:\n        '200':\n          description: greeting\n  /healthz:\n    get:\n      responses:\n        '200':\n          description: ok\n";
    repo.write("api/openapi.yaml", spec).unwrap();
    let base = String::from_utf8(
        Command::new("git")
            .args(["rev-parse", "HEAD"])
            .current_dir(repo.path())
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_owned();
    let vars = [("CI_MERGE_REQUEST_DIFF_BASE_SHA", base.as_str())];
    let added = spec.replace(
        "  /healthz:",
        "  /version:\n    get:\n      responses:\n        '200':\n          description: version\n  /healthz:",
    );
    repo.write("api/openapi.yaml", &added).unwrap();
    let run = mr_run(&repo, &["contract-test"], &vars);
    assert_eq!(run.verdict("contract-test"), "PASS", "{}", run.output);
    let removed = spec.replace(
        "  /hello:\n    get:\n      parameters:\n        - name: name\n          in: query\n          schema:\n            type: string\n      responses:\n        '200':\n          description: greeting\n",
        "",
    );
    assert_ne!(removed, spec);
    repo.write("api/openapi.yaml", &removed).unwrap();
    let run = mr_run(&repo, &["contract-test"], &vars);
    assert_eq!(run.verdict("contract-test"), "FAIL", "{}", run.output);
    assert!(run.output.contains("api-path-removed"), "{}", run.output);
}

/// One corpus project per language, fetched from its registry at the pinned checksum, runs its
/// merge request pipeline with only the plan's include file: every job's verdict is the one the
/// corpus records (pass, undetermined with the reason in the log, or red for a project defect).
#[test]
fn corpus_projects_give_their_recorded_verdicts() {
    let work = tempfile::tempdir().unwrap();
    let mut problems = Vec::new();
    let mut ran = 0;
    for project in corpus::projects().unwrap().into_iter().filter(|p| p.ci) {
        let source = corpus::fetch(&project, &corpus::cache_dir(), work.path())
            .unwrap_or_else(|e| panic!("{}: {e:#}", project.name));
        let run = corpus::run_project(&project, &source).unwrap();
        assert!(
            run.jobs.len() >= 9,
            "{}: {:?}\n{}",
            project.name,
            run.jobs,
            run.output
        );
        // Undetermined is never green: it is a warning state with the reason in the log.
        for job in run.jobs.iter().filter(|j| j.verdict == "undetermined") {
            assert!(!job.reason.is_empty(), "{}: {job:?}", project.name);
        }
        // A chart's unit-test is kubeconform: a pass shows its summary with objects validated and
        // nothing invalid (a chart that rendered nothing would show `Valid: 0`).
        if project.language == "helm" {
            let valid = run
                .output
                .lines()
                .find_map(|l| {
                    let rest = &l[l.find("Valid: ")? + "Valid: ".len()..];
                    let (n, tail) = rest.split_once(',')?;
                    tail.trim_start()
                        .starts_with("Invalid: 0, Errors: 0, Skipped: 0")
                        .then(|| n.trim().parse::<u32>().ok())
                        .flatten()
                })
                .unwrap_or(0);
            assert!(
                valid > 0,
                "{}: no kubeconform summary with valid objects:\n{}",
                project.name,
                run.output
            );
        }
        // A shell project's unit-test is bats (no coverage tool): a pass ran the project's tests.
        if project.language == "shell" {
            assert!(
                run.output.contains("detected: bats tests in test/"),
                "{}: no bats run:\n{}",
                project.name,
                run.output
            );
        }
        // A passing unit-test went through the coverage gate with a measured number.
        if !matches!(project.language.as_str(), "helm" | "shell")
            && run
                .verdict("unit-test")
                .is_some_and(|j| j.verdict == "pass")
        {
            assert!(
                run.output.contains("coverage: ") && run.output.contains("% (threshold 80%)"),
                "{}: unit-test passed without a coverage figure:\n{}",
                project.name,
                run.output
            );
        }
        problems.extend(corpus::unexpected(&project, &run));
        ran += 1;
    }
    assert!(ran >= 4, "one project per language");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// helm.yml runs helm lint, helm template and kubeconform for real, offline, against a schema
/// mirror made from the vendored Kubernetes 1.32 definitions (`KUBECONFORM_SCHEMA_LOCATION`, the
/// platform's instance variable): the fixture chart passes; a kind beyond the vendored per-kind
/// files (`PriorityClass`) validates too; a misspelt field fails kubeconform (-strict); a kind with no
/// schema fails rather than being skipped; a template error fails helm lint.
#[test]
fn helm_charts_are_linted_rendered_and_validated_offline() {
    let schemas = tempfile::tempdir().unwrap();
    let kinds = ci_templates::kube_schemas::write_schema_dir(schemas.path()).unwrap();
    assert!(kinds > 100, "{kinds} kinds");
    let location = ci_templates::kube_schemas::schema_location(schemas.path());
    let mut vars = vec![("KUBECONFORM_SCHEMA_LOCATION", location.as_str())];
    vars.extend(NO_NETWORK.iter().copied());
    let repo = fixture("helm-chart");
    repo.write(
        "chart/templates/priorityclass.yaml",
        "apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata:\n  name: {{ .Chart.Name }}\nvalue: 1000\n",
    )
    .unwrap();
    let run = mr_run(&repo, &["lint", "unit-test"], &vars);
    assert_eq!(run.verdict("lint"), "PASS", "{}", run.output);
    assert_eq!(run.verdict("unit-test"), "PASS", "{}", run.output);
    assert!(
        run.output.contains("detected: charts: ./chart"),
        "{}",
        run.output
    );
    assert!(
        run.output
            .contains("Valid: 2, Invalid: 0, Errors: 0, Skipped: 0"),
        "{}",
        run.output
    );

    let deployment =
        std::fs::read_to_string(repo.path().join("chart/templates/deployment.yaml")).unwrap();
    repo.write(
        "chart/templates/deployment.yaml",
        &deployment.replace("spec:\n  selector:", "spec:\n  replica: 2\n  selector:"),
    )
    .unwrap();
    let run = mr_run(&repo, &["lint", "unit-test"], &vars);
    assert_fails_with(&run, "unit-test", "GATE FAILED: kubeconform");
    assert!(run.output.contains("replica"), "{}", run.output);

    repo.write("chart/templates/deployment.yaml", &deployment)
        .unwrap();
    repo.write(
        "chart/templates/servicemonitor.yaml",
        "apiVersion: example.invalid/v1\nkind: Widget\nmetadata:\n  name: w\n",
    )
    .unwrap();
    let run = mr_run(&repo, &["lint", "unit-test"], &vars);
    assert_fails_with(&run, "unit-test", "GATE FAILED: kubeconform");
    assert!(run.output.contains("Widget"), "{}", run.output);

    repo.write(
        "chart/templates/servicemonitor.yaml",
        "{{ .Values.missing.field }}\n",
    )
    .unwrap();
    let run = mr_run(&repo, &["lint"], &vars);
    assert_fails_with(&run, "lint", "GATE FAILED: helm lint --strict ./chart");

    // Without the platform's schema mirror the job downloads nothing: it fails and says what to set.
    repo.write("chart/templates/servicemonitor.yaml", "")
        .unwrap();
    let run = mr_run(&repo, &["lint", "unit-test"], NO_NETWORK);
    assert_eq!(run.verdict("lint"), "PASS", "{}", run.output);
    assert_fails_with(
        &run,
        "unit-test",
        "GATE FAILED: KUBECONFORM_SCHEMA_LOCATION is not set",
    );
}

/// A library file (`library/templates/<file>`) as YAML.
fn template_yaml(file: &str) -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("library/templates")
        .join(file);
    serde_saphyr::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// The script line of `job` in a library file that contains `needle`.
fn script_line(file: &str, job: &str, needle: &str) -> String {
    template_yaml(file)[job]["script"]
        .as_array()
        .and_then(|lines| {
            lines
                .iter()
                .filter_map(|l| l.as_str())
                .find(|l| l.contains(needle))
        })
        .unwrap_or_else(|| panic!("{file} {job}: no script line with {needle}"))
        .to_owned()
}

/// Runs `snippet` then base.yml's coverage gate on `$total` in `dir`; its output and status.
fn gate_total(dir: &Path, snippet: &str) -> (String, bool) {
    let gate = template_yaml("base.yml")[".gates"]["coverage"][0]
        .as_str()
        .expect("base.yml .gates.coverage")
        .to_owned();
    let out = Command::new("bash")
        .args([
            "-ec",
            &format!("{snippet}\n{gate}\ncoverage_gate \"$total\""),
        ])
        .current_dir(dir)
        .env("COVERAGE_THRESHOLD", "80")
        .output()
        .unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        out.status.success(),
    )
}

/// 79.96 % is below the 80 % gate: the totals the gate reads are not rounded up first (Go's
/// `go tool cover -func` and `coverage report` would both print 80). A block a second test binary
/// covered counts once, as go tool cover counts it.
#[test]
fn coverage_totals_are_not_rounded_up_to_the_gate() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("cover.out"),
        "mode: atomic\nx/a.go:1.1,2.2 1999 0\nx/a.go:3.1,4.2 501 0\nx/a.go:1.1,2.2 1999 4\n",
    )
    .unwrap();
    let go = script_line("languages/go.yml", "unit-test", "awk 'NR > 1");
    let (out, passed) = gate_total(dir.path(), &go);
    assert!(!passed && out.contains("coverage: 79.96%"), "{out}");

    // coverage.py's integer totals (statements and branches), as its JSON report gives them:
    // 2399 of 3000 is 79.966 %, which `coverage report` prints as 80.
    std::fs::write(
        dir.path().join("coverage.json"),
        r#"{"totals": {"covered_lines": 1999, "num_statements": 2500, "covered_branches": 400, "num_branches": 500, "percent_covered": 79.9666, "percent_covered_display": "80"}}"#,
    )
    .unwrap();
    let python = script_line("languages/python.yml", "unit-test", "num_statements");
    let (out, passed) = gate_total(dir.path(), &python);
    assert!(!passed && out.contains("coverage: 79.96%"), "{out}");
    std::fs::write(
        dir.path().join("coverage.json"),
        r#"{"totals": {"covered_lines": 80, "num_statements": 100, "percent_covered": 80.0}}"#,
    )
    .unwrap();
    let (out, passed) = gate_total(dir.path(), &python);
    assert!(passed && out.contains("coverage: 80.00%"), "{out}");
}
