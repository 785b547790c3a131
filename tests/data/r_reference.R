# R's influence measures for the fits in tests/test_diagnostics.py (run by make_r_reference.py).
args <- commandArgs(trailingOnly = TRUE)
dir <- args[1]
measures <- function(fit, name) {
  out <- data.frame(
    hat = hatvalues(fit),
    rstandard = rstandard(fit),
    rstandard_pearson = if (inherits(fit, "glm")) rstandard(fit, type = "pearson") else rstandard(fit),
    rstudent = rstudent(fit),
    cooks = cooks.distance(fit),
    dffits = dffits(fit),
    covratio = covratio(fit),
    pearson = residuals(fit, type = "pearson"),
    deviance = residuals(fit, type = "deviance")
  )
  dfb <- dfbetas(fit)
  colnames(dfb) <- paste0("dfbetas_", make.names(colnames(dfb)))
  dfbeta_raw <- dfbeta(fit)
  colnames(dfbeta_raw) <- paste0("dfbeta_", make.names(colnames(dfbeta_raw)))
  is_inf <- influence.measures(fit)$is.inf
  colnames(is_inf) <- paste0("inf_", make.names(colnames(is_inf)))
  write.csv(cbind(out, dfb, dfbeta_raw, is_inf), file.path(dir, paste0(name, "_r.csv")), row.names = FALSE)
}
tight <- glm.control(epsilon = 1e-14, maxit = 100)   # converge to working precision
# R's dfbeta against a refit without row 1 (the sign check for a decreasing link)
check_refit <- function(fit, data, name) {
  refit <- update(fit, data = data[-1, ])
  write.csv(data.frame(exact = coef(fit) - coef(refit), dfbeta = dfbeta(fit)[1, ]),
            file.path(dir, paste0(name, "_refit1_r.csv")), row.names = FALSE)
}
spector <- read.csv(file.path(dir, "spector.csv"))
measures(glm(GRADE ~ GPA + TUCE + PSI, family = binomial, data = spector, control = tight), "spector")
scotland <- read.csv(file.path(dir, "scotland.csv"))
scotland_fit <- glm(YES ~ COUTAX + UNEMPF + MOR + ACT + GDP + AGE + COUTAX_FEMALEUNEMP,
                    family = Gamma, data = scotland, control = tight)
measures(scotland_fit, "scotland")
check_refit(scotland_fit, scotland, "scotland")
cpunish <- read.csv(file.path(dir, "cpunish.csv"))
measures(glm(EXECUTIONS ~ INCOME + PERPOVERTY + PERBLACK + VC100k96 + SOUTH + DEGREE,
             family = poisson, data = cpunish, control = tight), "cpunish")
stackloss_data <- read.csv(file.path(dir, "stackloss.csv"))
measures(lm(STACKLOSS ~ AIRFLOW + WATERTEMP + ACIDCONC, data = stackloss_data), "stackloss")
