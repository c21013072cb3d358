"""A registered raysearch model as an MLflow pyfunc, logged as code ("models from code"):
MLflow runs this file to load the model, which is rebuilt from raysearch's own folder
(config.json + model.pt, a state dict read with weights_only), so loading it unpickles nothing.
What it predicts: raysearch.serving.predict.
"""

import mlflow
import numpy as np
from mlflow.pyfunc import PythonModel, PythonModelContext


class RaysearchModel(PythonModel):
    def load_context(self, context: PythonModelContext) -> None:
        from raysearch import checkpoint

        self.model = checkpoint.load(context.artifacts["model"])
        self.task = checkpoint.read_config(context.artifacts["model"]).get(
            "task", "classification")

    # an ndarray hint: MLflow validates inputs against the logged signature, not the hint
    def predict(self, context: PythonModelContext, model_input: np.ndarray,
                params: dict | None = None) -> np.ndarray:
        from raysearch.serving import predict

        return predict(self.model, model_input, self.task)


mlflow.models.set_model(RaysearchModel())
