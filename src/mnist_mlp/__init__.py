"""Train a multilayer perceptron on MNIST with stochastic gradient descent."""
