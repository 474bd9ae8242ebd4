"""Building blocks of ST-ResNet: residual units, the parametric-matrix fusion, the branches and the
external component. Every function takes and returns Keras tensors, channels-last (batch, H, W, C).
"""
import keras
from keras import layers, ops


@keras.saving.register_keras_serializable(package="st_resnet")
class ParametricFusionWeight(layers.Layer):
    """Element-wise learnable weight W of the input's shape (H, W, C): returns W * x (Eq. 4).

    One per branch; their sum is the paper's parametric-matrix fusion. The official code starts
    W uniform in [0, 1).
    """

    def build(self, input_shape):
        self.w = self.add_weight(
            name="w", shape=tuple(input_shape[1:]),
            initializer=keras.initializers.RandomUniform(0.0, 1.0),
            trainable=True)

    def call(self, x):
        return ops.multiply(x, self.w)  # (batch, H, W, C) * (H, W, C)


@keras.saving.register_keras_serializable(package="st_resnet")
class CellBias(layers.Layer):
    """A learnable bias b of the input's shape (H, W, C), started at 0: returns x + b.

    Not in the paper. Before the output activation it lets each cell and flow start at the
    training data's mean (set by the caller with set_weights), so the first Adam steps need not
    drag every output from 0 to a heavy-tailed city's near-empty level (docs/own_city.md).
    """

    def build(self, input_shape):
        self.b = self.add_weight(name="b", shape=tuple(input_shape[1:]), initializer="zeros",
                                 trainable=True)

    def call(self, x):
        return ops.add(x, self.b)  # (batch, H, W, C) + (H, W, C)


def conv3x3(x, filters, name):
    """3x3 'same' convolution, no activation (the paper's Conv1, Conv2 and the units' convs)."""
    return layers.Conv2D(filters, 3, padding="same", name=name)(x)


def bn_relu_conv(x, filters, batch_norm, name):
    """[BatchNorm ->] ReLU -> Conv3x3, the official `_bn_relu_conv` (pre-activation order)."""
    if batch_norm:
        x = layers.BatchNormalization(name=f"{name}_bn")(x)
    x = layers.Activation("relu", name=f"{name}_relu")(x)
    return conv3x3(x, filters, name=f"{name}_conv")


def residual_unit(x, filters, batch_norm, name):
    """x + F(x) with F = [BN] ReLU Conv [BN] ReLU Conv; keeps the shape (batch, H, W, filters)."""
    residual = bn_relu_conv(x, filters, batch_norm, name=f"{name}_a")
    residual = bn_relu_conv(residual, filters, batch_norm, name=f"{name}_b")
    return layers.Add(name=f"{name}_add")([x, residual])


def branch(x, nb_flow, nb_residual_unit, filters, batch_norm, name):
    """One of closeness / period / trend: Conv1 -> L residual units -> ReLU -> Conv2.

    (batch, H, W, 2 * len) -> (batch, H, W, nb_flow)
    """
    x = conv3x3(x, filters, name=f"{name}_conv1")
    for i in range(nb_residual_unit):
        x = residual_unit(x, filters, batch_norm, name=f"{name}_res{i + 1}")
    x = layers.Activation("relu", name=f"{name}_relu")(x)
    return conv3x3(x, nb_flow, name=f"{name}_conv2")


def fuse(branch_outputs):
    """Parametric-matrix fusion of {branch name: (batch, H, W, nb_flow)}: the sum of W_b * X_b.
    One branch alone is used as is, as in the official code (one weight would only rescale it)."""
    if len(branch_outputs) == 1:
        return next(iter(branch_outputs.values()))
    weighted = [ParametricFusionWeight(name=f"{name}_fusion")(x)
                for name, x in branch_outputs.items()]
    return layers.Add(name="fusion")(weighted)


def external_component(e, map_height, map_width, nb_flow):
    """E_t -> Dense(10) -> ReLU -> Dense(nb_flow*H*W) -> ReLU -> (batch, H, W, nb_flow)."""
    x = layers.Dense(10, activation="relu", name="external_dense1")(e)
    x = layers.Dense(nb_flow * map_height * map_width, activation="relu",
                     name="external_dense2")(x)
    return layers.Reshape((map_height, map_width, nb_flow), name="external_map")(x)
