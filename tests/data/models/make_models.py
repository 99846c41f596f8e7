"""Builds the tiny hand-written ONNX graphs the engine tests run on real ONNX
Runtime. Their outputs are known in closed form, so tests can check the
engine's plumbing (layouts, activations, heatmap geometry, batching) exactly,
independently of any trained model.

    python tests/data/models/make_models.py   # needs `onnx` (pip install onnx==1.23.2)

spot.onnx     image [N,1,64,64] NCHW -> maps [N,2,8,8] = 8x8 block means,
              scores [N,2] = max of maps. A bright spot is found where it is.
spot-nhwc.onnx image [N,48,48,3] NHWC -> scores [N,2] logits
              = 10 * (max 6x6 block mean of the channel mean - 0.5); no heatmap.
"""
from pathlib import Path

import onnx
from onnx import TensorProto, helper

HERE = Path(__file__).resolve().parent


def save(graph, name):
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)],
                              producer_name="cxr-triage tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, HERE / name)


def spot():
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, 64, 64])
    maps = helper.make_tensor_value_info("maps", TensorProto.FLOAT, ["N", 2, 8, 8])
    scores = helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 2])
    axes = helper.make_tensor("axes", TensorProto.INT64, [2], [2, 3])
    nodes = [
        helper.make_node("AveragePool", ["image"], ["pooled"], kernel_shape=[8, 8], strides=[8, 8]),
        helper.make_node("Concat", ["pooled", "pooled"], ["maps"], axis=1),
        helper.make_node("ReduceMax", ["maps", "axes"], ["scores"], keepdims=0),
    ]
    save(helper.make_graph(nodes, "spot", [x], [maps, scores], initializer=[axes]), "spot.onnx")


def spot_nhwc():
    x = helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["N", 48, 48, 3])
    scores = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])
    inits = [
        helper.make_tensor("c_axis", TensorProto.INT64, [1], [1]),
        helper.make_tensor("hw_axes", TensorProto.INT64, [2], [2, 3]),
        helper.make_tensor("ten", TensorProto.FLOAT, [], [10.0]),
        helper.make_tensor("half", TensorProto.FLOAT, [], [0.5]),
    ]
    nodes = [
        helper.make_node("Transpose", ["pixels"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("ReduceMean", ["nchw", "c_axis"], ["grey"], keepdims=1),
        helper.make_node("AveragePool", ["grey"], ["pooled"], kernel_shape=[6, 6], strides=[6, 6]),
        helper.make_node("ReduceMax", ["pooled", "hw_axes"], ["peak"], keepdims=0),
        helper.make_node("Concat", ["peak", "peak"], ["both"], axis=1),
        helper.make_node("Sub", ["both", "half"], ["centred"]),
        helper.make_node("Mul", ["centred", "ten"], ["logits"]),
    ]
    save(helper.make_graph(nodes, "spot_nhwc", [x], [scores], initializer=inits), "spot-nhwc.onnx")


if __name__ == "__main__":
    spot()
    spot_nhwc()
