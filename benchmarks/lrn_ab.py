"""AlexNet crafting with this project's LRN layer vs TensorFlow's LRN kernels, interleaved.

Runs ``craft_throughput.crafter_rate`` for AlexNet in fresh subprocesses, alternating the
two LRN implementations ``--rounds`` times, so both see the same machine state (this
machine's speed drifted by 25% between benchmark runs).

    python -m benchmarks.lrn_ab [--batches=1] [--steps=10] [--rounds=2]
"""
from absl import app, flags

from benchmarks import common

FLAGS = flags.FLAGS
flags.DEFINE_integer("batches", 1, "Crafting batches of 100 images optimised at once.")
flags.DEFINE_integer("steps", 10, "Timed steps per measurement.")
flags.DEFINE_integer("rounds", 2, "Alternations of the two implementations.")
flags.DEFINE_string("out", "benchmarks/results/lrn_ab.json", "JSON output path.")


def main(argv):
    del argv
    results = []
    for _ in range(FLAGS.rounds):
        for implementation in ("tensorflow", "ours"):
            results.append(common.run_isolated("benchmarks.craft_throughput:crafter_rate",
                                               model="alexnet", lrn=implementation,
                                               parallel=FLAGS.batches, steps=FLAGS.steps))
    common.print_table([(r["lrn"], r["images"], r["image_steps_per_s"], r["peak_rss_mb"])
                        for r in results], ("LRN", "images", "img-steps/s", "RSS MB"))
    common.write_json(FLAGS.out, {"benchmark": "lrn_ab", "machine": common.machine_info(),
                                  "settings": {"batches": FLAGS.batches, "steps": FLAGS.steps,
                                               "rounds": FLAGS.rounds},
                                  "results": results})
    print(f"wrote {FLAGS.out}")


if __name__ == "__main__":
    app.run(main)
