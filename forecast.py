"""Forecasting with a saved run: python main.py --forecast_from=<run folder> [--horizon=k]
predicts the k slots after the last one of the data, recursively, with the run's model, scaling
and settings; the data files and side files may be given anew (e.g. this week's file). main.py
calls it when --forecast_from is given.
"""
import os

import numpy as np

import backend
import datasets
import evaluation
import flowfiles
import run_folder
import timestamps
from settings import ConfigError
from timestamps import DataError

FORECAST_KEYS = {"forecast_from", "horizon", "dataset", "data_dir", "holiday_file",
                 "meteorology_file", "duplicates", "empty_slots"}


def forecast(run_dir, given, cfg):
    """Forecast the `horizon` slots after the last one of the data with a saved run's model,
    scaler and settings; the data set, folders and side files may be given anew. Writes
    forecast-<first slot>-<k>.h5 and a map of the first slot (.png) into the run folder."""
    if given - FORECAST_KEYS:
        raise ConfigError(f"with --forecast_from only {sorted(FORECAST_KEYS)} may be given; the "
                          f"other settings are the run's: {sorted(given - FORECAST_KEYS)}")
    run, saved_scaler = run_folder.load_run(run_dir)
    for key in ("dataset", "data_dir", "holiday_file", "meteorology_file", "duplicates",
                "empty_slots"):
        if key in given:
            run[key] = cfg[key]
    if "holiday_file" not in given and os.path.isfile(os.path.join(run_dir, "holidays.txt")):
        run["holiday_file"] = os.path.join(run_dir, "holidays.txt")  # the run's own copy
    frames, slot_ids, features = datasets.load_for_forecast(
        run["dataset"], run["data_dir"], run["T"], run["use_meta"], run["use_holiday"],
        run["use_meteorology"], run["holiday_file"], run["meteorology_file"],
        saved_scaler["external"], run["use_time_of_day"], run["duplicates"], run["empty_slots"])
    start, T = slot_ids[-1] + 1, run["T"]
    lengths = (run["len_closeness"], run["len_period"], run["len_trend"])
    missing = datasets.missing_history(slot_ids, T, lengths, start, cfg["horizon"])
    if missing:
        raise DataError(
            f"{run['dataset']} lacks {len(missing)} slot(s) that forecasting {cfg['horizon']} "
            f"step(s) after its last slot needs: "
            f"{', '.join(timestamps.format_timestamps(missing[:5], T))}"
            f"{' ...' if len(missing) > 5 else ''}")
    keras = backend.import_keras()
    import modules  # noqa: F401  (registers the fusion layer for loading)
    import plots
    model = keras.saving.load_model(os.path.join(run_dir, "model.keras"))
    if tuple(model.output.shape[1:]) != frames.shape[1:]:
        raise DataError(f"{run['dataset']} has frames of {frames.shape[1:]} but the "
                                 f"model of {run_dir} predicts {tuple(model.output.shape[1:])}")
    preds, _ = evaluation.recursive_forecast(
        model, frames, slot_ids, T, lengths, datasets.MinMaxScaler.from_dict(saved_scaler),
        features, [start], cfg["horizon"])
    slots = start + np.arange(cfg["horizon"])
    stamps = timestamps.format_timestamps(slots, T)
    path = os.path.join(run_dir, f"forecast-{stamps[0]}-{cfg['horizon']}")
    k = 1
    while os.path.exists(path + ".h5"):  # never overwrite an earlier forecast
        k += 1
        path = os.path.join(run_dir, f"forecast-{stamps[0]}-{cfg['horizon']}-{k}")
    run_folder.write_predictions(path + ".h5", preds[:, 0], None, slots, T)
    plots.forecast_maps(preds[0, 0], flowfiles.flow_names(run["dataset"]),
                        f"forecast for {stamps[0]}", path + ".png")
    print(f"forecast of {stamps[0]} .. {stamps[-1]}: {path}.h5 and {path}.png")
    return path + ".h5"
