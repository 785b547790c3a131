"""Export statsmodels' bundled data sets as CSV and run r_reference.R on them (needs R).

    python tests/data/make_r_reference.py

writes tests/data/<name>.csv (the data) and tests/data/<name>_r.csv (R's influence
measures). The tests read the committed CSV files and never need R.
"""

import pathlib
import subprocess

import statsmodels.api as sm

HERE = pathlib.Path(__file__).parent


def main():
    spector = sm.datasets.spector.load_pandas().data[["GRADE", "GPA", "TUCE", "PSI"]]
    spector.to_csv(HERE / "spector.csv", index=False)
    scotland = sm.datasets.scotland.load_pandas().data
    scotland.to_csv(HERE / "scotland.csv", index=False)
    cpunish = sm.datasets.cpunish.load_pandas().data
    cpunish.to_csv(HERE / "cpunish.csv", index=False)
    stackloss = sm.datasets.stackloss.load_pandas().data
    stackloss.to_csv(HERE / "stackloss.csv", index=False)
    subprocess.run(["Rscript", str(HERE / "r_reference.R"), str(HERE)], check=True)


if __name__ == "__main__":
    main()
