"""Figures (`python -m facerecon.figures <figure>`), each a PNG in the report with a PDF
beside it: the paper's Figure 3 (methods x non-neutral test scans) and its error maps,
Figure 4 (Table 2's rows, shape and error), the per-scan Chamfer per method, and the mean
metrics per expression. Rows come from `table1` / `table2`; columns from the test scans
(the module picks at most `figures.columns` non-neutral ones, always the same)."""

#: The figures under {DATA}/figures/ (PNG, PDF beside), all in `rule all`.
FIGURE_NAMES = ["fig3_comparison", "fig3_errors", "fig4_ablation", "chamfer_distribution"]
#: Every test scan as SUBJECT/EXPRESSION, the figures' `--scans`.
FIGURE_SCANS = " ".join(f"{s}/{e}" for s, e in TEST_SCANS)


#: Inputs of the rendered figures, per table: its rows' meshes and metrics and the ground
#: truth (+ landmarks, which frame the camera) on every test scan.
FIGURE_INPUTS = {
    table: {
        "meshes": [f"{DATA}/meshes/{m}/{s}/{e}.ply" for m in methods for s, e in TEST_SCANS],
        "metrics": metric_files(methods, TEST_SCANS),
        "gt": scan_files(f"{DATA}/preprocessed/{{subject}}/{{expression}}.face.ply",
                         TEST_SCANS),
        "sheets": scan_files(f"{DATA}/preprocessed/{{subject}}/{{expression}}.ply", TEST_SCANS),
        "landmarks": scan_files(
            f"{DATA}/preprocessed/{{subject}}/{{expression}}.landmarks.txt", TEST_SCANS),
    }
    for table, methods in (("table1", TABLE1), ("table2", TABLE2))
}


for figure, subcategory in (
    ("comparison", "Figure 3: reconstructions"),
    ("errors", "Figure 3: error maps"),
):

    rule:
        name:
            f"figure_{figure}"
        input:
            **FIGURE_INPUTS["table1"],
        output:
            png=report(f"{DATA}/figures/fig3_{figure}.png",
                       caption=f"../workflow/report/fig3_{figure}.rst", category="Figures",
                       subcategory=subcategory),
            pdf=f"{DATA}/figures/fig3_{figure}.pdf",
        params:
            figure=figure,
            data=lambda w, input: Path(input.gt[0]).parents[2],  # the dataset folder
            methods=" ".join(TABLE1),
            scans=FIGURE_SCANS,
            config=stage_config("figures"),
        conda:
            "../envs/geometry.yaml"
        log:
            f"{DATA}/logs/figure_{figure}.log",
        benchmark:
            f"{DATA}/benchmarks/figure_{figure}.tsv"
        shell:
            "python -m facerecon.figures {params.figure} --config {params.config:q}"
            " --data {params.data:q} --methods {params.methods} --scans {params.scans}"
            " --out {output.png:q} > {log:q} 2>&1"


rule figure_ablation:
    input:
        **FIGURE_INPUTS["table2"],
    output:
        png=report(f"{DATA}/figures/fig4_ablation.png",
                   caption="../workflow/report/fig4_ablation.rst", category="Figures",
                   subcategory="Figure 4: ablation"),
        pdf=f"{DATA}/figures/fig4_ablation.pdf",
    params:
        data=lambda w, input: Path(input.gt[0]).parents[2],
        methods=table_methods_json(TABLE2),
        scans=FIGURE_SCANS,
        config=stage_config("figures"),
    conda:
        "../envs/geometry.yaml"
    log:
        f"{DATA}/logs/figure_ablation.log",
    benchmark:
        f"{DATA}/benchmarks/figure_ablation.tsv"
    shell:
        "python -m facerecon.figures ablation --config {params.config:q} --data {params.data:q}"
        " --methods-json {params.methods:q} --scans {params.scans}"
        " --out {output.png:q} > {log:q} 2>&1"


rule figure_distribution:
    input:
        f"{DATA}/scans.csv",
    output:
        png=report(f"{DATA}/figures/chamfer_distribution.png",
                   caption="../workflow/report/chamfer_distribution.rst", category="Figures",
                   subcategory="Per-scan Chamfer"),
        pdf=f"{DATA}/figures/chamfer_distribution.pdf",
    params:
        table1=" ".join(TABLE1),
        table2=" ".join(TABLE2),
    conda:
        "../envs/geometry.yaml"
    log:
        f"{DATA}/logs/figure_distribution.log",
    benchmark:
        f"{DATA}/benchmarks/figure_distribution.tsv"
    shell:
        "python -m facerecon.figures distribution --scans-csv {input:q}"
        " --panel 'Table 1' {params.table1} --panel 'Table 2' {params.table2}"
        " --out {output.png:q} > {log:q} 2>&1"


rule figure_by_expression:
    input:
        f"{DATA}/scans.csv",
    output:
        png=report("results/figures/chamfer_by_expression.png",
                   caption="../workflow/report/chamfer_by_expression.rst",
                   category="Figures", subcategory="Per expression"),
        pdf="results/figures/chamfer_by_expression.pdf",
    conda:
        "../envs/geometry.yaml"
    log:
        f"{DATA}/logs/figure_by_expression.log",
    benchmark:
        f"{DATA}/benchmarks/figure_by_expression.tsv"
    shell:
        "python -m facerecon.figures by-expression --scans-csv {input:q}"
        " --out {output.png:q} > {log:q} 2>&1"
