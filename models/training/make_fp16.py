"""Writes the half-precision variant of an ONNX model for CUDA/TensorRT.

Weights and activations become float16; the graph's inputs and outputs stay
float32 (``keep_io_types``), so the service feeds and reads it exactly like
the float32 model and the manifest's tensors, shapes and dtypes still hold.
Name it in the manifest as ``model.fp16_file``; the service uses it when
``engine.session.fp16`` is on and the model runs on a GPU.

    python make_fp16.py ../cxr-reference-v1.onnx ../cxr-reference-v1-fp16.onnx

Deterministic: the same input model gives the same bytes.
"""

import argparse

import onnx
from onnxconverter_common import float16


def separate_outputs(graph: onnx.GraphProto) -> None:
    """Gives each graph output that other nodes also read (the reference
    model's heatmaps feed its scores) an Identity of its own, so that the
    float32 cast of the output does not change what those nodes read."""
    outputs = {o.name for o in graph.output}
    read = {i for node in graph.node for i in node.input}
    for name in sorted(outputs & read):
        inner = f"{name}__inner"
        for node in graph.node:
            node.output[:] = [inner if o == name else o for o in node.output]
            node.input[:] = [inner if i == name else i for i in node.input]
        graph.node.append(onnx.helper.make_node("Identity", [inner], [name], name=f"{name}__output"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="float32 ONNX model")
    parser.add_argument("target", help="where to write the float16 variant")
    args = parser.parse_args()
    convert(args.source, args.target)
    print(f"wrote {args.target}")


def convert(source, target) -> None:
    """Writes the float16 variant of `source` to `target`."""
    model = onnx.load(str(source))
    # Stale intermediate type annotations would contradict the converted
    # nodes; ONNX Runtime infers them again at load.
    del model.graph.value_info[:]
    separate_outputs(model.graph)
    half = float16.convert_float_to_float16(model, keep_io_types=True)
    onnx.checker.check_model(half)
    onnx.save(half, str(target))


if __name__ == "__main__":
    main()
