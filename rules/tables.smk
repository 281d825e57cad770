"""Stage 8: per-scan metrics, Table 1, Table 2 (ablation), per-subject reports
(figures: figures.smk)."""


rule collect_metrics:
    input:
        metric_files(METHODS, TEST_SCANS),
    output:
        f"{DATA}/scans.csv",
    conda:
        "../envs/geometry.yaml"
    log:
        f"{DATA}/logs/collect_metrics.log",
    benchmark:
        f"{DATA}/benchmarks/collect_metrics.tsv"
    shell:
        "python -m facerecon.aggregate collect --metrics {input:q} --out {output:q} > {log:q} 2>&1"


rule subject_report:
    input:
        lambda w: metric_files(METHODS, [s for s in TEST_SCANS if s[0] == w.subject]),
    output:
        f"{DATA}/subjects/{{subject}}.csv",
    conda:
        "../envs/geometry.yaml"
    log:
        f"{DATA}/logs/subject_report/{{subject}}.log",
    benchmark:
        f"{DATA}/benchmarks/subject_report/{{subject}}.tsv"
    shell:
        "python -m facerecon.aggregate collect --metrics {input:q} --out {output:q} > {log:q} 2>&1"


rule table:
    input:
        lambda w: metric_files(TABLE1 if w.table == "table1" else TABLE2, TEST_SCANS),
    output:
        csv=f"{DATA}/{{table}}.csv",
        md=f"{DATA}/{{table}}.md",
        tex=f"{DATA}/{{table}}.tex",
    wildcard_constraints:
        table="table1|table2",
    params:
        methods=lambda w: table_methods_json(TABLE1 if w.table == "table1" else TABLE2),
        dataset=CFG.dataset,
    conda:
        "../envs/geometry.yaml"
    log:
        f"{DATA}/logs/{{table}}.log",
    benchmark:
        f"{DATA}/benchmarks/{{table}}.tsv"
    shell:
        "python -m facerecon.aggregate {wildcards.table} --metrics {input:q}"
        " --methods-json {params.methods:q} --dataset {params.dataset}"
        " --out {output.csv:q} > {log:q} 2>&1"


rule publish_table:
    """The configured dataset's table as the user's target `results/<table>.csv`."""
    input:
        csv=f"{DATA}/{{table}}.csv",
        md=f"{DATA}/{{table}}.md",
        tex=f"{DATA}/{{table}}.tex",
    output:
        csv=report("results/{table}.csv", caption="../workflow/report/table.rst",
                   category="Tables"),
        md="results/{table}.md",
        tex="results/{table}.tex",
    wildcard_constraints:
        table="table1|table2",
    conda:
        "../envs/geometry.yaml"
    log:
        f"{DATA}/logs/publish_{{table}}.log",
    benchmark:
        f"{DATA}/benchmarks/publish_{{table}}.tsv"
    shell:
        "python -m facerecon.aggregate publish --table {input.csv:q} --out {output.csv:q}"
        " > {log:q} 2>&1"

