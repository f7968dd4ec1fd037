r"""One crafting process against several, interleaved: is the split worth it on this host?

Each round times ``Crafter`` in one process (all CPUs' threads) and then ``--processes``
concurrent processes (CPUs // processes threads each), at ``--parallel`` batches of 100
per process. Interleaving the rounds keeps the machine's drift out of the comparison.

    python -m benchmarks.craft_processes_ab [--model=lenet5 --processes=2 --rounds=5]

Prints each round, the means and their fraction of the float32 matmul rate (measured
first, in the same run); writes JSON.
"""
import statistics

from absl import app
from absl import flags

from benchmarks import common

flags.DEFINE_string("model", "lenet5", "Teacher (zskd_tf.models name).")
flags.DEFINE_integer("processes", 2, "Concurrent processes of the split run.")
flags.DEFINE_integer("parallel", 10, "Batches of 100 images per process.")
flags.DEFINE_integer("steps", 200, "Timed crafting steps per run.")
flags.DEFINE_integer("rounds", 5, "Interleaved rounds.")
flags.DEFINE_float("matmul_gflops", None, "Use this matmul rate instead of measuring it.")
flags.DEFINE_enum("precision", "float32", ["float32", "bfloat16"], "Crafting precision.")
flags.DEFINE_string("out", "benchmarks/results/craft_processes_ab.json", "JSON output.")
FLAGS = flags.FLAGS


def main(_):
    matmul = FLAGS.matmul_gflops or common.run_isolated("benchmarks.common:matmul_gflops",
                                                        n=2048, seconds=3.0)
    flops = None
    rows = []
    for r in range(FLAGS.rounds):
        one = common.run_isolated("benchmarks.craft_throughput:crafter_rate",
                                  model=FLAGS.model, parallel=FLAGS.parallel, steps=FLAGS.steps,
                                  precision=FLAGS.precision)
        split = common.run_isolated("benchmarks.craft_throughput:processes_rate",
                                    model=FLAGS.model, processes=FLAGS.processes,
                                    parallel=FLAGS.parallel, steps=FLAGS.steps,
                                    precision=FLAGS.precision)
        flops = one["flops_per_image_step"]
        rows.append({"round": r, "one_process": one["image_steps_per_s"],
                     "split": split["image_steps_per_s"],
                     "split_per_process": split["per_process_image_steps_per_s"],
                     "threads_per_process": split["threads_per_process"]})
        common.print_table([(r, one["image_steps_per_s"], split["image_steps_per_s"],
                             split["image_steps_per_s"] / one["image_steps_per_s"])],
                           ("round", "1 process", f"{FLAGS.processes} processes", "ratio"))
    means = {k: statistics.mean(row[k] for row in rows) for k in ("one_process", "split")}
    ratios = [row["split"] / row["one_process"] for row in rows]
    fractions = {k: v * flops / 1e9 / matmul for k, v in means.items()}
    print(f"mean image-steps/s: 1 process {means['one_process']:,.0f}, {FLAGS.processes} "
          f"processes {means['split']:,.0f}; ratio {min(ratios):.2f}-{max(ratios):.2f} "
          f"(mean {statistics.mean(ratios):.2f}); of the float32 matmul rate "
          f"{matmul:.1f} GFLOP/s: {100 * fractions['one_process']:.1f}% and "
          f"{100 * fractions['split']:.1f}%")
    common.write_json(FLAGS.out, {
        "benchmark": "craft_processes_ab", "machine": common.machine_info(),
        "settings": {"model": FLAGS.model, "processes": FLAGS.processes,
                     "parallel": FLAGS.parallel, "steps": FLAGS.steps, "rounds": FLAGS.rounds,
                     "precision": FLAGS.precision},
        "matmul_gflops": matmul, "flops_per_image_step": flops,
        "rounds": rows, "mean_image_steps_per_s": means,
        "mean_fraction_of_matmul": fractions, "ratios": ratios})


if __name__ == "__main__":
    app.run(main)
